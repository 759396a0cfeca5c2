"""The judgment of the validation checks on the platform model: normative statements,
numeric limits, images and flags already running, operators a proposal's custom resources
need; and the labelled fixture held to its figures (a regression net: a change that costs
precision or recall on it fails here, and ``bench/judgment_bench.py`` says which case)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from cortex_school.platform_model import load_platform
from cortex_school.platform_model.files import read_text, yaml_comments
from cortex_school.platform_model.mentions import mentions
from cortex_school.validation.already_deployed import AlreadyDeployedCheck
from cortex_school.validation.conflicts import bare_platform
from cortex_school.validation.dependencies import PlatformDependencyCheck, created_kinds
from cortex_school.validation.limits import exceeded, limits
from cortex_school.validation.normative import against, read_proposal, statements
from tests.factories import make_improvement

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "examples" / "platform-k3s"

REPO = {
    "apps/data/pg.yaml": """\
        apiVersion: postgresql.cnpg.io/v1
        kind: Cluster
        metadata: {name: pg-main, namespace: data}
        spec: {instances: 2}
        ---
        apiVersion: postgresql.cnpg.io/v1
        kind: ScheduledBackup
        metadata: {name: pg-main-nightly, namespace: data}
        spec: {schedule: "0 30 2 * * *", cluster: {name: pg-main}}
        """,
    "apps/ai/llm.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: llm, namespace: ai, labels: {app: llm}}
        spec:
          selector: {matchLabels: {app: llm}}
          template:
            metadata: {labels: {app: llm}}
            spec:
              containers:
              - name: server
                image: vllm/vllm-openai:v0.6.3
                args: ["--enable-prefix-caching", "--max-model-len=16384"]
        """,
    "apps/tools/mcp.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: tools, namespace: tools}
        spec:
          template:
            spec:
              containers:
              - {name: gh, image: "ghcr.io/github/github-mcp-server:v0.2.1"}
        """,
    "apps/q/qdrant.yaml": """\
        apiVersion: v1
        kind: Service
        metadata: {name: qdrant, namespace: q, labels: {app: qdrant}}
        spec:
          type: ClusterIP   # do not expose outside the cluster
          selector: {app: qdrant}
          ports: [{port: 6333}]
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: qdrant, namespace: q, labels: {app: qdrant}}
        spec:
          selector: {matchLabels: {app: qdrant}}
          template:
            metadata: {labels: {app: qdrant}}
            spec: {containers: [{name: qdrant, image: "qdrant/qdrant:v1.12.1"}]}
        """,
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    for rel, text in REPO.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return load_platform(root)


def conflicts(check, description, notes=""):
    return [f.reason for f in check.run(make_improvement(description, notes=notes)) if f.conflict]


# -- statements ---------------------------------------------------------------------------


def banned(text, platform=None):
    return sorted({b.name for s in statements(text, "d.md", "s", platform or bare_platform()) for b in s.banned})


def test_what_a_decision_rules_out_in_its_many_phrasings():
    assert banned("We do not run Kafka (or Redpanda) next to NATS.") == ["kafka", "redpanda"]
    assert banned("Weaviate is deprecated and must not be redeployed.") == ["weaviate"]
    assert banned("Alloy replaced Promtail in September 2024.") == ["promtail"]
    assert banned("Jaeger was replaced by Tempo.") == ["jaeger"]
    assert banned("We run Arize Phoenix instead of Langfuse.") == ["langfuse"]
    assert banned("trivy-operator is not to be reinstalled.") == ["trivy-operator"]
    assert banned("Services of type `NodePort` are not used for applications.") == ["nodeport"]
    table = "| from | to | state |\n|---|---|---|\n| ingress-nginx | Traefik | ✅ Done |\n| Redis | NATS | 🟡 In progress |"
    assert banned(table) == ["ingress-nginx"]


def test_more_phrasings_of_a_decision():
    assert banned("We decided against a sidecar service mesh; neither Istio nor Linkerd will be installed.") == [
        "istio", "linkerd"]
    # The second sentence refers back to the first ("the option").
    assert banned("* **Apache Kafka with the Strimzi operator.** The better-known option, and not an option "
                  "for us.") == ["kafka", "strimzi"]
    assert banned("We ruled out Cassandra early.") == ["cassandra"]
    # Code blocks are examples; "cannot" describes a limit, it decides nothing.
    assert banned("Labels:\n```yaml\n# never deploy Kafka here\n```\n") == []
    assert not statements("The volumes cannot be snapshotted.", "d", "s", bare_platform())
    p = bare_platform()
    [stmt] = [s for s in statements("The ingress-nginx Service is the only Service of type `LoadBalancer`.",
                                    "d", "s", p) if s.chosen]
    text = "Expose the console on its own LoadBalancer Service"
    assert against(stmt, read_proposal(text, mentions(text, p)), p)
    text = "Add a rate limit to the ingress-nginx LoadBalancer"
    assert not against(stmt, read_proposal(text, mentions(text, p)), p)


def test_a_comparison_is_not_a_ban_and_what_runs_is_banned_only_when_narrowed(platform):
    assert banned("Phoenix needs one database instead of ClickHouse and S3.") == []
    # Qdrant runs here: "instead of Qdrant" cannot rule out the running Qdrant ...
    assert banned("We chose Milvus instead of Qdrant.", platform) == []
    # ... but a narrowed name still counts ("the Bitnami postgresql chart").
    found = [b for s in statements("The Bitnami postgresql chart is deprecated.", "d", "s", platform)
             for b in s.banned]
    assert [(b.name, sorted(b.qualifiers)) for b in found] == [("postgresql", ["bitnami"])]


def test_a_proposal_against_a_statement_and_one_that_complies():
    p = bare_platform()

    def goes_against(doc, proposal):
        found = read_proposal(proposal, mentions(proposal, p))
        return [r for s in statements(doc, "d", "s", p) if (r := against(s, found, p))]

    assert goes_against("We do not install ingress-nginx.", "Replace Traefik with ingress-nginx for annotations")
    assert not goes_against("We do not install ingress-nginx.", "Remove ingress-nginx and keep Traefik")
    doc = "Applications always go through LiteLLM; they do not call vLLM or Ollama directly."
    assert goes_against(doc, "Point Open WebUI directly at the vLLM endpoint")
    assert not goes_against(doc, "Allow only LiteLLM to reach the vLLM server with a NetworkPolicy")
    doc = "Clients connect through the postgres-primary Service, never pod IPs."
    assert not goes_against(doc, "Point clients at the postgres-primary Service instead of pod IPs")
    assert goes_against("Traefik is the only ingress controller.", "Deploy HAProxy Ingress as the ingress controller")


def test_yaml_comments_with_their_setting_and_quotes_respected():
    text = 'a: "x # not a comment"\nminReplicaCount: 1  # Never scale to zero\n# block one\n# block two\nb: 2\n'
    assert yaml_comments(text) == [(2, "minReplicaCount: 1", "Never scale to zero"),
                                   (3, "b: 2", "block one block two")]


def test_a_manifest_comment_is_a_decision_about_its_component(platform, tmp_path):
    from cortex_school.validation.conflicts import comment_statements

    exposing = "Expose the Qdrant dashboard through a NodePort"
    found = read_proposal(exposing, mentions(exposing, platform))
    reasons = [against(s, found, platform) for s, _ in comment_statements(platform, found)]
    assert any(r and "expos" in r for r in reasons)
    scrape = "Scrape Qdrant metrics with a ServiceMonitor"
    found = read_proposal(scrape, mentions(scrape, platform))
    assert not any(against(s, found, platform) for s, _ in comment_statements(platform, found))


def test_numeric_limits():
    [memory] = limits("New workloads should stay below 1Gi per replica unless capacity is added.", "d", "s")
    assert memory.what == "memory" and memory.per_replica and memory.value == 2**30
    big = make_improvement("Run a model server", type="implementation",
                           notes="2 replicas, each requesting 4 CPU and 12Gi memory.")
    assert exceeded(memory, big) == "12.0Gi of memory per replica"
    small = make_improvement("Run an exporter", type="implementation", notes="1 replica requesting 256Mi memory.")
    assert exceeded(memory, small) is None
    [params] = limits("Any model we serve must be at most ~32B parameters.", "d", "s")
    assert exceeded(params, make_improvement("Serve Llama-3.1-70B-Instruct with vLLM")) == "a 70B-parameter model"
    assert limits("Redis uses under 2Gi today.", "d", "s") == []  # a description, not a rule


# -- already deployed, dependency ---------------------------------------------------------------


def test_same_image_flag_already_set_and_operator_instances(platform):
    check = AlreadyDeployedCheck(lambda: platform)
    assert any("the image github/github-mcp-server already runs" in r
               for r in conflicts(check, "Deploy the GitHub MCP server", "Run github/github-mcp-server in tools."))
    assert any("--enable-prefix-caching is already set in apps/ai/llm.yaml" in r
               for r in conflicts(check, "Turn on prefix caching in vLLM", "Add --enable-prefix-caching to vLLM."))
    assert not conflicts(check, "Raise the vLLM context", "Add --max-num-seqs=64 to vLLM.")
    # A CloudNativePG Cluster is PostgreSQL: its nightly ScheduledBackup is already there.
    assert "postgresql" in platform.components
    assert any("pg-main-nightly" in r for r in conflicts(check, "Add nightly backups for PostgreSQL"))


def test_an_object_created_by_name_that_exists_and_a_conversion_already_made(platform):
    from cortex_school.validation.already_deployed import created_objects

    assert created_objects("Create the Service qdrant in q, and add a PDB for the llm Deployment.") == [
        ("Service", "qdrant")]
    check = AlreadyDeployedCheck(lambda: platform)
    assert any("Service q/qdrant" in r and "already exists" in r
               for r in conflicts(check, "A stable name for Qdrant", "Create the Service qdrant selecting app=qdrant."))
    assert any("StatefulSet q/qdrant" in r for r in conflicts(check, "Convert the Qdrant Deployment to a StatefulSet"))
    assert not conflicts(check, "Convert the llm Deployment to a StatefulSet")


def test_a_custom_resource_needs_its_operator(platform):
    check = PlatformDependencyCheck(lambda: platform)
    reasons = conflicts(check, "Enforce signed images with Kyverno verifyImages policies",
                        "Create a Kyverno ClusterPolicy with a verifyImages rule.")
    assert any(r.startswith("missing dependency: Kyverno is not deployed") for r in reasons)
    assert created_kinds("Run it as a StatefulSet with a Stream of events", platform) == []
    assert created_kinds("jetstream.nats.io/v1beta2 Stream objects", platform) == [
        ("jetstream.nats.io/stream", "nack")]
    # The kind already in use: its operator is there, whatever it is called.
    assert not conflicts(check, "Add a ScheduledBackup for pg-main at 03:00")
    # What it deploys itself is no dependency, though it is then "added as a data source".
    assert not conflicts(check, "Trace storage", "Deploy Tempo in ai and add Tempo as a data source.")
    assert conflicts(check, "Traces in Tempo", "Add Tempo as a data source.")


def test_read_text_stays_inside_the_repository(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "secret").write_text("token")
    (tmp_path / "repo" / "link").symlink_to(tmp_path / "secret")
    assert read_text(tmp_path / "repo", "link") is None
    assert read_text(tmp_path / "repo", "../secret") is None
    (tmp_path / "repo" / "ok.yaml").write_text("a: 1")
    assert read_text(tmp_path / "repo", "ok.yaml") == "a: 1"


# -- the labelled fixture ---------------------------------------------------------------------


@pytest.mark.parametrize("check", ["already_deployed", "dependency", "capacity"])
def test_the_k3s_fixture_keeps_its_precision_and_recall(check):
    sys.path.insert(0, str(ROOT / "bench"))
    import judgment_bench

    r = judgment_bench.measure(FIXTURE, check)
    assert r["precision"] >= 0.9 and r["recall"] >= 0.85, (r["fp"], r["fn"])


# -- the live cluster merged into the model -------------------------------------------------


def test_what_only_the_live_cluster_runs_counts_as_deployed(tmp_path, httpserver):
    import re

    from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster
    from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote
    from cortex_school.errors import TransientError
    from cortex_school.platform_model.source import PlatformSource
    from tests.fake_kube import FakeKube, FakeWorkload, kube_client

    seed = tmp_path / "seed" / "apps" / "q"
    seed.mkdir(parents=True)
    (seed / "qdrant.yaml").write_text(textwrap.dedent(REPO["apps/q/qdrant.yaml"]))
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", tmp_path / "seed")
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "clone", author="t <t@t>")
    fake = FakeKube()
    # Installed by hand with helm, in no manifest; and the repository's own Qdrant.
    fake.workloads[("Deployment", "observability", "phoenix")] = FakeWorkload(
        labels={"app.kubernetes.io/name": "phoenix"}, image="arizephoenix/phoenix:version-8.0.0")
    fake.workloads[("StatefulSet", "q", "qdrant")] = FakeWorkload(labels={"app": "qdrant"}, image="qdrant/qdrant:v1")
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    cluster = KubernetesCluster(api_client=kube_client(httpserver.url_for("/")))
    source = PlatformSource(lambda: repo, live=cluster.live_objects)
    platform = source()
    assert platform is not None and source.last_error is None
    phoenix = [o for o in platform.inventory.objects if o.name == "phoenix"]
    assert [o.file for o in phoenix] == ["live:observability/Deployment/phoenix"]
    qdrant = [o for o in platform.inventory.objects if o.name == "qdrant" and o.kind == "StatefulSet"]
    assert [o.file for o in qdrant] == ["apps/q/qdrant.yaml"]  # the repository's copy, not a second one
    check = AlreadyDeployedCheck(source)
    assert any("live:observability/Deployment/phoenix" in r
               for r in conflicts(check, "Deploy Arize Phoenix for LLM tracing"))

    def down() -> list:
        raise TransientError("Kubernetes API: connection refused")

    alone = PlatformSource(lambda: repo, live=down)
    assert alone() is not None and "live cluster not read" in (alone.last_error or "")
    assert not [o for o in alone().inventory.objects if o.origin == "live"]
