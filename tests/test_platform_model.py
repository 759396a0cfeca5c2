"""The platform model: what a GitOps repository runs, read the way real repositories are
laid out (Helm chart folders, Kustomize, ArgoCD Applications and ApplicationSets anywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cortex_school.cli import app
from cortex_school.platform_model import (
    Catalogue,
    build_platform,
    default_catalogue,
    image_repository,
    load_platform,
    normalise,
    read_inventory,
)
from cortex_school.platform_model.components import CatalogueEntry

ROOT = Path(__file__).resolve().parent.parent


def write(root: Path, rel: str, docs: list[dict] | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(docs if isinstance(docs, str) else yaml.safe_dump_all(docs))


def deployment(name: str, ns: str | None, image: str, labels: dict[str, str], port: int = 8080) -> dict:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image,
                                                           "ports": [{"containerPort": port}]}]}}}}


def a_real_layout(root: Path) -> Path:
    """An app-of-apps repo: Applications outside apps/, an ApplicationSet, a chart folder
    with templates, a Kustomize overlay, Traefik and KEDA resources."""
    write(root, "argocd-apps/platform.yaml", [
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
         "metadata": {"name": "falco", "namespace": "argocd"},
         "spec": {"source": {"repoURL": "https://falcosecurity.github.io/charts", "chart": "falco",
                             "targetRevision": "4.8.1",
                             "helm": {"values": "falcosidekick:\n  enabled: true\n  image:\n"
                                                "    repository: falcosecurity/falcosidekick\n    tag: 2.29.0\n"}},
                  "destination": {"namespace": "security"}}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
         "metadata": {"name": "messaging-prod", "namespace": "argocd"},
         "spec": {"source": {"repoURL": "https://git.example/platform.git", "path": "overlays/prod"},
                  "destination": {"namespace": "messaging"}}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
         "metadata": {"name": "apps", "namespace": "argocd"},
         "spec": {"generators": [{"git": {"repoURL": "https://git.example/platform.git",
                                          "directories": [{"path": "apps/*"}, {"path": "apps/legacy", "exclude": True}]}}],
                  "template": {"metadata": {"name": "{{path.basename}}"},
                               "spec": {"source": {"repoURL": "https://git.example/platform.git",
                                                   "path": "{{path}}", "directory": {"recurse": True}},
                                        "destination": {"namespace": "{{path.basename}}"}}}}},
    ])
    write(root, "apps/knowledge/qdrant.yaml", [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "qdrant", "namespace": "knowledge"},
         "spec": {"selector": {"matchLabels": {"app": "qdrant"}},
                  "template": {"metadata": {"labels": {"app": "qdrant"}},
                               "spec": {"containers": [{"name": "qdrant", "image": "qdrant/qdrant:v1.12.1",
                                                        "ports": [{"containerPort": 6333}]}]}},
                  "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                            "spec": {"storageClassName": "longhorn"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "qdrant", "namespace": "knowledge"},
         "spec": {"selector": {"app": "qdrant"}, "ports": [{"port": 6333}]}},
        {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
         "metadata": {"name": "qdrant", "namespace": "knowledge"}, "spec": {"routes": []}},
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
         "metadata": {"name": "worker", "namespace": "knowledge"}, "spec": {"scaleTargetRef": {"name": "w"}}},
    ])
    write(root, "apps/security/trivy.yaml", [deployment("trivy-server", "security", "aquasec/trivy:0.56.2",
                                                         {"app.kubernetes.io/name": "trivy-server"})])
    write(root, "apps/web/ingress.yaml", [
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "site", "namespace": "web"},
         "spec": {"ingressClassName": "traefik", "rules": [{"host": "site.example.com"}]}}])
    write(root, "charts/phoenix/Chart.yaml", [{"apiVersion": "v2", "name": "phoenix", "version": "1.2.0",
                                               "dependencies": [{"name": "postgresql", "version": "15.x"}]}])
    write(root, "charts/phoenix/values.yaml", [{"image": {"repository": "arizephoenix/phoenix", "tag": "5.1.0"}}])
    write(root, "charts/phoenix/templates/deployment.yaml",
          "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
          "spec:\n  replicas: {{ .Values.replicas }}\n")
    write(root, "overlays/prod/kustomization.yaml", [
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "messaging",
         "resources": ["nats.yaml"], "images": [{"name": "nats", "newTag": "2.10.22"}],
         "helmCharts": [{"name": "redis", "repo": "https://charts.bitnami.com/bitnami", "version": "20.1.0",
                         "valuesInline": {"image": {"repository": "bitnami/redis", "tag": "7.4"}}}]}])
    write(root, "overlays/prod/nats.yaml", [deployment("nats", None, "nats:2.10", {"app": "nats"}, 4222)])
    write(root, "apps/broken/bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)))
    return root


def small_catalogue() -> Catalogue:
    return Catalogue([
        CatalogueEntry(name="qdrant", images=("qdrant/qdrant",), charts=("qdrant",), provides=("vector-search",)),
        CatalogueEntry(name="trivy", aliases=("trivy server",), images=("aquasec/trivy",), charts=("trivy",)),
        CatalogueEntry(name="traefik", images=("traefik",), kinds=("traefik.io/IngressRoute",),
                       ingress_classes=("traefik",), provides=("ingress",), k3s_builtin=True),
        CatalogueEntry(name="keda", kinds=("keda.sh/ScaledObject",), provides=("event-driven-autoscaling",)),
        CatalogueEntry(name="falco", charts=("falco",), images=("falcosecurity/falco",)),
        CatalogueEntry(name="falcosidekick", images=("falcosecurity/falcosidekick",)),
        CatalogueEntry(name="arize-phoenix", aliases=("phoenix",), images=("arizephoenix/phoenix",)),
        CatalogueEntry(name="redis", images=("redis", "bitnami/redis"), charts=("redis",), provides=("cache",)),
        CatalogueEntry(name="postgresql", aliases=("postgres",), charts=("postgresql",)),
        CatalogueEntry(name="nats", images=("nats",), provides=("message-queue",)),
        CatalogueEntry(name="longhorn", charts=("longhorn",), provides=("block-storage",)),
        CatalogueEntry(name="coredns", images=("coredns/coredns",), k3s_builtin=True),
    ])


def test_a_real_layout_is_read_without_false_problems(tmp_path):
    """GIVEN charts with templates, a Kustomization, Applications outside apps/ WHEN read
    THEN templates are recognised (not objects, not problems), Chart.yaml and values.yaml
    are not objects, the Kustomization's namespace applies, Applications are parsed."""
    inv = read_inventory(a_real_layout(tmp_path))
    kinds = sorted(o.kind for o in inv.objects)
    assert "Chart" not in str(kinds) and kinds.count("Application") == 2 and kinds.count("ApplicationSet") == 1
    assert inv.templates == ["charts/phoenix/templates/deployment.yaml"]
    assert [f for f, _ in inv.unreadable] == ["apps/broken/bomb.yaml"]  # the alias bomb, and only it
    nats = inv.find("Deployment", "messaging", "nats")
    assert nats is not None and nats.origin == "kustomize" and nats.ports == (4222,) and nats.deployed
    (appset,) = [a for a in inv.applications if a.kind == "ApplicationSet"]
    assert appset.generator_directories == ("apps/*",) and appset.generator_excludes == ("apps/legacy",)
    assert appset.recurse
    charts = {c.name: c for c in inv.charts}
    assert charts["phoenix"].dependencies == ("postgresql",) and charts["phoenix"].images == ("arizephoenix/phoenix:5.1.0",)
    assert charts["falco"].namespace == "security" and "falcosecurity/falcosidekick:2.29.0" in charts["falco"].images
    assert charts["redis"].repository.endswith("bitnami")
    qdrant = inv.find("StatefulSet", "knowledge", "qdrant")
    assert qdrant.pod_labels == {"app": "qdrant"} and qdrant.storage_classes == ("longhorn",)


def test_components_are_named_by_labels_images_charts_and_implied_by_kinds(tmp_path):
    """GIVEN the layout WHEN components are identified THEN each is found under its canonical
    name from whatever names it (label, image, chart, values image), capabilities follow
    from the custom resources and ingress classes in use, K3s adds its built-ins."""
    platform = build_platform(read_inventory(a_real_layout(tmp_path)), small_catalogue(), distribution="k3s")
    found = set(platform.components)
    assert {"qdrant", "trivy", "traefik", "keda", "falco", "falcosidekick", "arize-phoenix", "redis",
            "postgresql", "nats", "longhorn", "coredns"} <= found
    assert platform.find("Trivy Server") is platform.components["trivy"]
    assert platform.find("aquasec/trivy:latest") is platform.components["trivy"]
    assert platform.find("phoenix").name == "arize-phoenix"
    assert any("IngressRoute" in e for e in platform.components["traefik"].evidence)
    assert any("ingressClassName traefik" in e for e in platform.components["traefik"].evidence)
    assert platform.has_capability("event-driven-autoscaling") and platform.has_capability("ingress")
    assert platform.find("vault") is None
    generic = build_platform(read_inventory(tmp_path), small_catalogue(), distribution="generic")
    assert "coredns" not in generic.components


def test_image_repositories_are_compared_without_host_tag_or_digest():
    """GIVEN image references in their many spellings WHEN normalised THEN one repository."""
    assert image_repository("docker.io/library/redis:7.2@sha256:abc") == "redis"
    assert image_repository("index.docker.io/aquasec/trivy:0.50") == "aquasec/trivy"
    assert image_repository("ghcr.io/Org/App:1.0") == "ghcr.io/org/app"
    assert image_repository("localhost:5000/team/app") == "localhost:5000/team/app"
    assert normalise("Cert Manager") == "cert-manager"


def test_the_shipped_catalogue_is_broad_and_unambiguous():
    """GIVEN the shipped catalogue WHEN loaded THEN a few hundred components, every name and
    alias means one component, and the operators the issue names are implied by their kinds."""
    cat = default_catalogue()
    assert len(cat.entries) >= 200
    seen: dict[str, str] = {}
    for entry in cat.entries.values():
        for token in {normalise(entry.name), *(normalise(a) for a in entry.aliases)}:
            assert seen.setdefault(token, entry.name) == entry.name, f"{token}: {seen[token]} and {entry.name}"
    for group_kind, expected in (("traefik.io/IngressRoute", "traefik"), ("keda.sh/ScaledObject", "keda"),
                                 ("cert-manager.io/Certificate", "cert-manager")):
        group, kind = group_kind.rsplit("/", 1)
        assert cat.kind_for(f"{group}/v1", kind) == expected, group_kind
    assert cat.name_for("HashiCorp Vault") == "vault" and cat.name_for("nats") == "nats"


def test_platform_show_prints_the_model_as_json(tmp_path):
    """GIVEN a repository WHEN `platform show --repo DIR --json` THEN the objects, components
    and what could not be read are in the output."""
    a_real_layout(tmp_path)
    result = CliRunner().invoke(app, ["platform", "show", "--repo", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)
    assert model["objects"] >= 8 and "messaging" in model["namespaces"]
    assert {c["name"] for c in model["components"]} >= {"qdrant", "trivy", "nats"}
    assert model["unreadable"][0]["file"] == "apps/broken/bomb.yaml" and model["templates"] == 1


def test_the_sample_platform_model_finds_what_it_runs():
    """GIVEN the shipped sample platform WHEN modelled THEN its components are found."""
    platform = load_platform(ROOT / "examples" / "platform" / "gitops")
    assert {"qdrant", "redis", "traefik", "cert-manager"} <= set(platform.components)


def test_mentions_tell_deploying_from_changing_and_relying(tmp_path):
    """GIVEN proposal sentences WHEN their component mentions are read THEN an installing
    verb deploys, a companion ("a PDB for the Qdrant StatefulSet") changes, a preposition
    of use ("store in", "behind") relies on."""
    from cortex_school.platform_model.mentions import mentions

    platform = build_platform(read_inventory(a_real_layout(tmp_path)), small_catalogue())

    def intents(text: str) -> set[tuple[str, str]]:
        return {(m.component, m.intent) for m in mentions(text, platform)}

    assert intents("Deploy Qdrant as the vector database") == {("qdrant", "deploys")}
    assert intents("Set up a Trivy server to scan images") == {("trivy", "deploys")}
    assert intents("Add a PodDisruptionBudget for the Qdrant StatefulSet") == {("qdrant", "changes")}
    assert intents("Store embeddings in Qdrant, then publish events to NATS") == {
        ("qdrant", "relies-on"), ("nats", "relies-on")}
    assert intents("Expose the API behind Traefik") == {("traefik", "relies-on")}
    assert ("falcosidekick", "deploys") in intents(
        "Run the falcosecurity/falcosidekick:2.29.0 image next to the API")


def test_already_deployed_flags_only_what_the_proposal_would_deploy_again(tmp_path):
    """GIVEN a platform running Qdrant, Trivy and Phoenix WHEN proposals are checked THEN
    deploying any of them again (by alias or image) is a conflict citing the objects, and
    a change to one of them or a new component is not."""
    from cortex_school.validation.already_deployed import AlreadyDeployedCheck
    from tests.factories import make_improvement

    platform = build_platform(read_inventory(a_real_layout(tmp_path)), small_catalogue())
    check = AlreadyDeployedCheck(lambda: platform)

    def conflicts(description: str, notes: str = "") -> list:
        return [f for f in check.run(make_improvement(description, notes=notes)) if f.conflict]

    (qdrant,) = conflicts("Deploy Qdrant for semantic search over the runbooks")
    assert "knowledge" in qdrant.reason and any("apps/knowledge/qdrant.yaml" in e for e in qdrant.evidence)
    assert conflicts("Install Arize Phoenix to trace LLM calls", notes="Use the phoenix Helm chart")
    assert conflicts("Introduce image vulnerability scanning", notes="Run aquasec/trivy in server mode")
    assert not conflicts("Add a PodDisruptionBudget for the Qdrant StatefulSet with maxUnavailable 1")
    assert not conflicts("Deploy HashiCorp Vault for secrets")  # not running: not this check's business
    assert AlreadyDeployedCheck(lambda: None).run(make_improvement("Deploy Qdrant"))[0].reason.startswith(
        "not checked")


def test_what_no_application_applies_is_not_running(tmp_path):
    """GIVEN an ApplicationSet that excludes apps/_archive WHEN modelled THEN the archived
    StatefulSet is in the inventory but marked not deployed, and is no component."""
    a_real_layout(tmp_path)
    write(tmp_path, "apps/_archive/weaviate.yaml", [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "weaviate", "namespace": "knowledge"},
         "spec": {"template": {"metadata": {"labels": {"app": "weaviate"}},
                               "spec": {"containers": [{"name": "w", "image": "semitechnologies/weaviate:1.26"}]}}}}])
    appset = tmp_path / "argocd-apps/platform.yaml"
    appset.write_text(appset.read_text().replace("path: apps/legacy", "path: apps/_archive"))
    inv = read_inventory(tmp_path)
    assert [o.ref for o in inv.not_deployed()] == ["StatefulSet knowledge/weaviate"]
    assert inv.find("StatefulSet", "knowledge", "qdrant").deployed is True
    platform = build_platform(inv, small_catalogue())
    assert "weaviate" not in platform.components and "qdrant" in platform.components


def test_a_companion_the_component_already_has_is_already_deployed(tmp_path):
    """GIVEN Qdrant with a PDB selecting its pods and a snapshot CronJob WHEN a proposal adds
    a PDB or snapshots for it THEN conflict citing the existing object; an HPA it lacks is
    not."""
    from cortex_school.validation.already_deployed import AlreadyDeployedCheck
    from tests.factories import make_improvement

    a_real_layout(tmp_path)
    write(tmp_path, "apps/knowledge/qdrant-extras.yaml", [
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "qdrant", "namespace": "knowledge"},
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "qdrant"}}}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "qdrant-snapshot", "namespace": "knowledge"},
         "spec": {"schedule": "15 1 * * *", "jobTemplate": {"spec": {"template": {"spec": {
             "containers": [{"name": "s", "image": "curlimages/curl:8.10.1"}]}}}}}}])
    check = AlreadyDeployedCheck(lambda: build_platform(read_inventory(tmp_path), small_catalogue()))

    def conflicts(description: str) -> list:
        return [f for f in check.run(make_improvement(description)) if f.conflict]

    (pdb,) = conflicts("Add a PodDisruptionBudget for the Qdrant StatefulSet with maxUnavailable 1")
    assert "PodDisruptionBudget knowledge/qdrant" in pdb.reason
    assert conflicts("Schedule nightly snapshots of the Qdrant collections")
    assert not conflicts("Add a HorizontalPodAutoscaler for the Qdrant StatefulSet")


def test_what_a_running_component_is_configured_to_do_is_already_provided(tmp_path):
    """GIVEN Alloy whose ConfigMap exports Kubernetes events and tails pod logs, and Valkey as
    the cache WHEN proposals add an event exporter, a log shipper, a cache THEN the first two
    are already provided (citing the file and the setting), the cache is an overlap for a
    person (another check name), and a commented-out or disabled block, or a longer name
    that merely starts with a marker, is no evidence."""
    from cortex_school.validation.already_deployed import OVERLAP, AlreadyDeployedCheck
    from tests.factories import make_improvement

    catalogue = Catalogue([
        CatalogueEntry(name="grafana-alloy", images=("grafana/alloy",),
                       provides=("telemetry-collection", "log-shipping"),
                       configures=(("event-export", ("loki.source.kubernetes_events",)),
                                   ("log-shipping", ("loki.source.kubernetes",)),
                                   ("trace-collection", ("otelcol.receiver.otlp",)),
                                   ("metrics-scraping", ("prometheus.scrape",)))),
        CatalogueEntry(name="kubernetes-event-exporter", aliases=("kubernetes event exporter",),
                       provides=("event-export",)),
        CatalogueEntry(name="promtail", provides=("log-shipping",)),
        CatalogueEntry(name="jaeger-agent", aliases=("jaeger agent",), provides=("trace-collection",)),
        CatalogueEntry(name="vmagent", provides=("metrics-scraping",)),
        CatalogueEntry(name="valkey", images=("valkey/valkey",), provides=("cache",)),
        CatalogueEntry(name="redis", provides=("cache", "pub-sub")),
    ])
    config = ("// otelcol.receiver.otlp \"off\" {}\n"
              "loki.source.kubernetes_events \"events\" {\n  forward_to = [loki.write.default.receiver]\n}\n"
              "loki.source.kubernetes \"pods\" {\n  forward_to = [loki.write.default.receiver]\n}\n"
              "prometheus.scrape_extra \"x\" {}\n")
    write(tmp_path, "apps/observability/alloy.yaml",
          yaml.safe_dump(deployment("alloy", "observability", "grafana/alloy:v1.4.2",
                                    {"app.kubernetes.io/name": "alloy"}))
          + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alloy-config\n  namespace: observability\n"
          + "data:\n  config.alloy: |\n" + "".join(f"    {line}\n" for line in config.splitlines()))
    write(tmp_path, "apps/data/valkey.yaml", [deployment("valkey", "data", "valkey/valkey:8.0", {"app": "valkey"})])
    platform = build_platform(read_inventory(tmp_path), catalogue)
    assert platform.configured("event-export") == [
        "grafana-alloy (apps/observability/alloy.yaml: loki.source.kubernetes_events)"]
    assert platform.configured("trace-collection") == [] and platform.configured("metrics-scraping") == []
    check = AlreadyDeployedCheck(lambda: platform)

    def conflicts(description: str) -> list:
        return [f for f in check.run(make_improvement(description)) if f.conflict]

    (events,) = conflicts("Deploy kubernetes-event-exporter to ship Kubernetes events to Loki")
    assert events.check == "already_deployed" and events.reason.startswith("already provided")
    assert "loki.source.kubernetes_events" in events.evidence[0]
    (logs,) = conflicts("Install Promtail as a DaemonSet to ship pod logs")
    assert logs.check == "already_deployed" and "apps/observability/alloy.yaml" in logs.evidence[0]
    assert not conflicts("Deploy the Jaeger agent to collect traces")  # only in a comment
    assert not conflicts("Run vmagent to scrape every pod")  # prometheus.scrape_extra is another name
    (cache,) = conflicts("Add Redis as a cache for carrier rate quotes")
    assert cache.check == OVERLAP and "valkey" in cache.reason
    disabled = tmp_path / "apps/observability/alloy.yaml"
    disabled.write_text(disabled.read_text().replace("loki.source.kubernetes_events \"events\" {",
                                                     "loki.source.kubernetes_events \"events\" { enabled: false"))
    assert build_platform(read_inventory(tmp_path), catalogue).configured("event-export") == []


def test_dependencies_are_looked_up_in_the_platform_with_an_open_vocabulary(tmp_path):
    """GIVEN the layout WHEN proposals rely on components THEN what runs, what a kind implies
    and what a same-kind component provides are present; a catalogue component found nowhere
    is missing; what the proposal installs itself (or its chart bundles) is not a dependency;
    a common word is a product only when capitalised."""
    from cortex_school.validation.dependencies import PlatformDependencyCheck
    from tests.factories import make_improvement

    cat = Catalogue([*small_catalogue().entries.values(),
                     CatalogueEntry(name="vault", aliases=("hashicorp vault",), images=("hashicorp/vault",),
                                    common_word=True, provides=("secrets-management",)),
                     CatalogueEntry(name="nats-jetstream", aliases=("nats jetstream", "jetstream")),
                     CatalogueEntry(name="clickhouse", images=("clickhouse/clickhouse-server",)),
                     CatalogueEntry(name="langfuse", images=("langfuse/langfuse",))])
    check = PlatformDependencyCheck(lambda: build_platform(read_inventory(a_real_layout(tmp_path)), cat))

    def missing(description: str) -> set[str]:
        return {f.related_id for f in check.run(make_improvement(description)) if f.conflict}

    assert missing("Read database credentials from HashiCorp Vault at start-up") == {"vault"}
    assert missing("Expose the API behind Traefik and autoscale it via KEDA") == set()
    assert missing("Publish ingestion events to NATS JetStream") == set()  # a feature of the NATS that runs
    assert missing("Install Langfuse with its bundled ClickHouse") == set()
    assert missing("Keep every vault of knowledge in Qdrant") == set()  # "vault", the word
