"""Hostile inputs for the judgment on the platform model: numeric limits in docs, the
already-deployed and dependency checks, component mentions, and the live-cluster merge.

From an adversarial review (24 findings, each pinned here with its fix): linear scans on
200 KB proposals and odd live answers, durations and counts that are not limits, phrasing
that hid an already-deployed component or invented a missing operator, and live objects
that could hang a validation, shadow an archived object or forge a citation. Each test is
bounded in time (SIGALRM) so a pathological case fails instead of hanging the run."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from cortex_school.platform_model import load_platform
from cortex_school.platform_model.components import build_platform
from cortex_school.platform_model.mentions import image_references, mentions
from cortex_school.platform_model.model import MAX_LIVE_OBJECTS, merge_live, read_inventory
from cortex_school.validation.already_deployed import AlreadyDeployedCheck, created_objects
from cortex_school.validation.dependencies import PlatformDependencyCheck, created_kinds
from cortex_school.validation.limits import Limit, exceeded, limits
from tests.factories import make_improvement
from tests.timebox import within

ROOT = Path(__file__).resolve().parent.parent
K3S = ROOT / "examples" / "platform-k3s" / "gitops"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


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
    "apps/q/qdrant.yaml": """\
        apiVersion: v1
        kind: Service
        metadata: {name: qdrant, namespace: q, labels: {app: qdrant}}
        spec:
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

# An ArgoCD Application applies apps/ (to namespace q, manifests without a namespace);
# archive/ is applied by nothing.
ARGO_REPO = {
    "argocd/apps.yaml": """\
        apiVersion: argoproj.io/v1alpha1
        kind: Application
        metadata: {name: apps, namespace: argocd}
        spec:
          source: {repoURL: https://example.invalid/repo.git, path: apps, directory: {recurse: true}}
          destination: {namespace: q}
        """,
    "apps/qdrant.yaml": """\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: qdrant, labels: {app: qdrant}}
        spec:
          selector: {matchLabels: {app: qdrant}}
          template:
            metadata: {labels: {app: qdrant}}
            spec: {containers: [{name: qdrant, image: "qdrant/qdrant:v1.12.1"}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: qdrant}
        spec: {selector: {app: qdrant}, ports: [{port: 6333}]}
        """,
    "archive/phoenix.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: phoenix, namespace: observability, labels: {app.kubernetes.io/name: phoenix}}
        spec:
          template:
            metadata: {labels: {app.kubernetes.io/name: phoenix}}
            spec: {containers: [{name: p, image: "arizephoenix/phoenix:version-8.0.0"}]}
        """,
    "archive/policy.yaml": """\
        apiVersion: kyverno.io/v1
        kind: ClusterPolicy
        metadata: {name: old-verify-images}
        spec: {rules: []}
        """,
}


def workload(kind: str, ns: str, name: str, labels: dict[str, Any], image: str = "x/y:1") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "apps/v1",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


@pytest.fixture(scope="module")
def k3s():
    return load_platform(K3S)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return load_platform(write(tmp_path_factory.mktemp("repo"), REPO))


@pytest.fixture(scope="module")
def argo_root(tmp_path_factory):
    return write(tmp_path_factory.mktemp("argo"), ARGO_REPO)


def conflicts(check, description, notes=""):
    with within(2.0):
        return [f.reason for f in check.run(make_improvement(description, notes=notes)) if f.conflict]


# == time: adversarial 50-200 KB inputs ===================================================


def test_a_long_clause_of_deploy_mentions_is_not_mentions_times_catalogue_kinds(k3s):
    # _own_kind_after scans every catalogue kind (~700) for every "deploys" mention: a
    # 200 KB clause of "deploy qdrant" costs ~14k x 700 iterations, per mentions() call,
    # and a check calls mentions() two or three times.
    text = "deploy qdrant " * (200_000 // 14)
    check = AlreadyDeployedCheck(lambda: k3s)
    started = time.perf_counter()
    with within(2.0):
        check.run(make_improvement(text[:100_000], notes=text[100_000:]))
    assert time.perf_counter() - started < 1.5


def test_image_references_are_linear_in_dotted_pieces():
    # Every "a" after a "." is a \b start for _IMAGE, and each scans the 512-char piece:
    # quadratic per piece, ~400 pieces in 200 KB.
    text = ("a." * 250 + "/ ") * (200_000 // 503)
    started = time.perf_counter()
    with within(2.0):
        image_references(text)
    assert time.perf_counter() - started < 0.5


def test_mentions_image_scan_is_linear_in_dotted_pieces(k3s):
    text = ("a." * 250 + "/ ") * (200_000 // 503)
    started = time.perf_counter()
    with within(2.0):
        mentions(text, k3s)
    assert time.perf_counter() - started < 1.0


def test_companions_of_a_component_with_many_live_workloads_are_not_quadratic(tmp_path):
    # existing_companions: every Service selector x every pod-label set of the component
    # (5k x 5k _matches when nothing matches), and again for every PDB.
    inv = read_inventory(write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]}))
    live = [workload("Deployment", "x", f"qd{i}", {"app": "qdrant", "i": str(i)}) for i in range(5000)]
    live += [{"kind": "Service", "apiVersion": "v1", "metadata": {"name": f"s{i}", "namespace": "x"},
              "spec": {"selector": {"app": "other"}}} for i in range(5000)]
    platform = build_platform(merge_live(inv, live))
    check = AlreadyDeployedCheck(lambda: platform)
    with within(2.0):
        check.run(make_improvement("Add a ServiceMonitor for Qdrant", notes=""))


def test_a_limit_sentence_with_a_long_whitespace_run_is_not_quadratic():
    # `\s*~?\s*` after the bound: every split of a whitespace run between the two \s*.
    doc = ("must under" + " " * 1985 + "x. ") * 25  # 25 sentences of < 2000 chars in 50 KB
    started = time.perf_counter()
    with within(2.0):
        assert limits(doc, "d", "s") == []
    assert time.perf_counter() - started < 0.3


def test_pins_linear_scans_on_hostile_text(k3s):
    check = AlreadyDeployedCheck(lambda: k3s)
    dep = PlatformDependencyCheck(lambda: k3s)
    for text in ["deploy" + " " * 200_000,
                 ("create the Service " + " " * 1000) * 190,
                 " ".join(f"--flag-{i}" for i in range(18_000)),
                 "a" + "-a" * 100_000,
                 ("as " * 26 + "to" + " " * 5000 + "Qdrant PDB ") * 38]:
        with within(2.0):
            check.run(make_improvement(text[:100_000], notes=text[100_000:]))
            dep.run(make_improvement(text[:100_000], notes=text[100_000:]))
    with within(2.0):
        p = Limit("parameters", 1, False, "d", "s", "x")
        exceeded(p, make_improvement("a" + "-a1" * 60_000))


def test_pins_merge_live_caps_a_100k_object_answer(tmp_path):
    inv = read_inventory(write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]}))
    live = [workload("Deployment", "x", f"w{i}", {"app": f"w{i % 50}"}) for i in range(100_000)]
    with within(2.0):
        merged = merge_live(inv, live)
    assert len(merged.objects) - len(inv.objects) == MAX_LIVE_OBJECTS


# == numeric limits =====================================================================


def test_durations_and_counts_are_not_memory_limits():
    # "Mi" matches the start of "minutes", "Ti" of "times", "Ki" of "Kinds" (IGNORECASE,
    # no word boundary after the unit).
    assert limits("Deploys should finish in under 10 minutes.", "d", "s") == []
    assert limits("Rollouts must complete in less than 5 mins.", "d", "s") == []
    assert limits("Retry at most 3 times.", "d", "s") == []
    [memory] = limits("New workloads should stay below 1Gi per replica.", "d", "s")
    assert memory.value == 2**30  # pin


def test_a_count_of_events_is_not_a_model_size():
    [params] = limits("Any model we serve must be at most ~32B parameters.", "d", "s")
    assert exceeded(params, make_improvement("Index 100B events per month in ClickHouse")) is None
    assert exceeded(params, make_improvement("Serve Llama-3.1-70B-Instruct with vLLM")) == "a 70B-parameter model"


# == already deployed ===================================================================


def test_an_object_created_by_name_at_the_end_of_a_sentence(small):
    assert created_objects("Create the Service qdrant.") == [("Service", "qdrant")]
    assert created_objects("Create the Service qdrant.q.svc") == []  # a hostname: not a name (pin)
    check = AlreadyDeployedCheck(lambda: small)
    assert any("Service q/qdrant" in r for r in conflicts(check, "A stable name for Qdrant",
                                                           "Create the Service qdrant."))


def test_deploying_a_component_by_its_chart_or_into_a_namespace_is_still_deploying_it(small):
    check = AlreadyDeployedCheck(lambda: small)
    assert any("already deployed: Qdrant" in r for r in conflicts(check, "Deploy Qdrant for vector search."))  # pin
    assert any("already deployed: Qdrant" in r for r in conflicts(check, "Deploy Qdrant in namespace q."))
    assert any("already deployed: Qdrant" in r for r in conflicts(check, "Deploy the Qdrant Helm chart for search."))


def test_invisible_or_fullwidth_characters_in_the_description_do_not_hide_a_companion(small):
    check = AlreadyDeployedCheck(lambda: small)
    assert any("pg-main-nightly" in r for r in conflicts(check, "Add nightly backups for PostgreSQL"))  # pin
    assert any("pg-main-nightly" in r for r in conflicts(check, "Add nightly backups for Postgre\u200bSQL"))
    assert any("pg-main-nightly" in r for r in conflicts(check, "Add nightly backups for ＰｏｓｔｇｒｅＳＱＬ"))
    assert any("StatefulSet q/qdrant" in r for r in conflicts(check, "Convert the Q\u200bdrant Deployment to a StatefulSet"))


def test_twenty_made_up_flags_do_not_hide_a_flag_already_set(small):
    check = AlreadyDeployedCheck(lambda: small)
    junk = " ".join(f"--junk-flag-{i}" for i in range(20))
    assert any("--enable-prefix-caching is already set" in r for r in conflicts(
        check, "Turn on prefix caching in vLLM", f"Flags: {junk}. Add --enable-prefix-caching to vLLM."))


def test_removing_a_flag_is_not_setting_it_again(small):
    check = AlreadyDeployedCheck(lambda: small)
    assert not any("already configured" in r for r in conflicts(
        check, "Turn off prefix caching in vLLM", "Remove --enable-prefix-caching from the vLLM args."))


def test_upgrading_a_running_image_is_not_deploying_it_again(small):
    check = AlreadyDeployedCheck(lambda: small)
    assert not conflicts(check, "Upgrade Qdrant", "Upgrade qdrant/qdrant to v1.13.0 and run a snapshot first.")
    assert any("the image qdrant/qdrant already runs" in r  # pin: a second installation is
               for r in conflicts(check, "Vector search", "Deploy qdrant/qdrant:v1.13.0 in namespace search."))


# == dependencies =======================================================================


def test_calling_an_operator_built_in_does_not_make_it_present(k3s):
    check = PlatformDependencyCheck(lambda: k3s)
    assert "kyverno" not in k3s.components
    assert any("Kyverno" in r for r in conflicts(check, "Enforce signed images",
                                                 "Create a ClusterPolicy with a verifyImages rule using the "
                                                 "built-in Kyverno."))


def test_an_archived_custom_resource_does_not_stand_in_for_its_operator(argo_root):
    platform = load_platform(argo_root)
    assert "kyverno" not in platform.components
    check = PlatformDependencyCheck(lambda: platform)
    assert any("Kyverno" in r for r in conflicts(check, "Enforce signed images",
                                                 "Create a ClusterPolicy with a verifyImages rule."))


def test_a_kind_named_in_a_comparison_or_what_the_proposal_installs_is_no_missing_dependency(k3s):
    check = PlatformDependencyCheck(lambda: k3s)
    assert not any("Istio" in r for r in conflicts(
        check, "Routing", "Unlike an Istio VirtualService, a Traefik IngressRoute is enough here."))
    assert not any("Velero" in r for r in conflicts(check, "Install the Velero backup tool for disaster recovery."))
    # pin: a kind created for an absent operator is still found
    assert created_kinds("Create a Kyverno ClusterPolicy.", k3s) == [("kyverno.io/clusterpolicy", "kyverno")]


# == the live merge =====================================================================


def test_a_running_object_the_repository_only_archives_counts_as_running(argo_root):
    inv = read_inventory(argo_root)
    live = [workload("Deployment", "observability", "phoenix", {"app.kubernetes.io/name": "phoenix"},
                     "arizephoenix/phoenix:version-8.0.0")]
    platform = build_platform(merge_live(inv, live))
    check = AlreadyDeployedCheck(lambda: platform)
    assert any("already deployed" in r for r in conflicts(check, "Deploy Arize Phoenix for LLM tracing"))


def test_a_repository_object_without_a_namespace_is_not_doubled_by_its_live_copy(argo_root):
    inv = read_inventory(argo_root)
    live = [workload("StatefulSet", "q", "qdrant", {"app": "qdrant"}, "qdrant/qdrant:v1.12.1"),
            {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "qdrant", "namespace": "q"},
             "spec": {"selector": {"app": "qdrant"}}}]
    merged = merge_live(inv, live)
    assert [o.file for o in merged.objects if o.name == "qdrant"] == ["apps/qdrant.yaml", "apps/qdrant.yaml"]
    check = AlreadyDeployedCheck(lambda: build_platform(merged))
    assert any("(apps/qdrant.yaml) already exists" in r
               for r in conflicts(check, "A stable name", "Create the Service qdrant selecting app=qdrant"))


def test_live_names_with_control_characters_cannot_forge_a_citation(tmp_path):
    inv = read_inventory(write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]}))
    live = [workload("Deployment", "x\x1b[31m", "k\nalready deployed: Kyverno (apps/kyverno.yaml)",
                     {"app": "kyverno"}),
            workload("Deployment", "x", "qdrant (apps/q/qdrant.yaml)", {"app": "redis"})]
    merged = merge_live(inv, live)
    for o in merged.objects:
        assert o.name.isprintable() and o.namespace.isprintable() and o.file.isprintable()
        assert " " not in o.name and "(" not in o.name  # not a Kubernetes name: not taken as one


def test_odd_live_shapes_do_not_crash_and_null_labels_are_not_components(tmp_path):
    inv = read_inventory(write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]}))
    odd: list[Any] = [
        {"kind": "Deployment", "metadata": [1, 2], "spec": {}},
        {"kind": "Deployment", "metadata": {"name": "a", "namespace": "x", "labels": ["app", "x"]}, "spec": []},
        {"kind": "Deployment", "metadata": {"name": "b", "namespace": "x", "labels": {"app": None}},
         "spec": {"template": {"metadata": {"labels": "app=x"}, "spec": {"containers": {"image": "x"}}}}},
        {"kind": "Deployment", "metadata": {"name": "c", "namespace": "x"},
         "spec": {"template": {"spec": {"containers": ["redis:7", 5, None, {"image": ["a"]},
                                                       {"image": "x/y:1", "ports": [{"containerPort": "80"}, 7]}]}}}},
        {"kind": "Service", "apiVersion": {"a": 1}, "metadata": {"name": "d", "namespace": "x", "annotations": [1]},
         "spec": {"selector": "app", "ports": [{"port": None}]}},
        {"kind": "Ingress", "metadata": {"name": "e", "namespace": "x"}, "spec": {"ingressClassName": ["x"]}},
        {"kind": "StatefulSet", "metadata": {"name": "f", "namespace": "x"},
         "spec": {"volumeClaimTemplates": {"a": 1}, "selector": {"matchLabels": [1]}, "scaleTargetRef": "x"}},
        {"kind": "CronJob", "metadata": {"name": "g", "namespace": "x"}, "spec": {"jobTemplate": [1]}},
        {"kind": 5, "metadata": {"name": "i"}}, {"kind": "Deployment", "metadata": {"name": "j", "namespace": 5}},
        "str", None, 7,
    ]
    with within(2.0):
        merged = merge_live(inv, odd)
        platform = build_platform(merged)
        AlreadyDeployedCheck(lambda: platform).run(make_improvement("Deploy Redis", notes="Run x/y:1."))
        PlatformDependencyCheck(lambda: platform).run(make_improvement("Deploy Redis", notes="Run x/y:1."))
    assert {o.name for o in merged.objects if o.origin == "live"} == {"a", "b", "c", "d", "e", "f", "g"}  # pin
    assert "none" not in platform.components  # a null label value is no name


def test_merge_live_refuses_an_answer_that_is_not_a_list(tmp_path):
    inv = read_inventory(write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]}))
    assert merge_live(inv, {"items": []}).objects == inv.objects  # type: ignore[arg-type]


def test_pins_a_live_object_cannot_replace_the_repositorys_copy(tmp_path):
    inv = read_inventory(write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]}))
    live = [workload("StatefulSet", "q", "qdrant", {"app": "evil"}, "evil/evil:1")]
    merged = merge_live(inv, live)
    [sts] = [o for o in merged.objects if o.kind == "StatefulSet"]
    assert sts.file == "apps/q/qdrant.yaml" and sts.images == ("qdrant/qdrant:v1.12.1",)


# == the cluster reader and the source ====================================================


class _Recorder:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str):
        def call(**kwargs):
            self.calls.append(kwargs)
            return {"items": self.items}
        return call


def _cluster(items: list[dict[str, Any]]):
    from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster

    cluster = KubernetesCluster.__new__(KubernetesCluster)
    cluster.apps = _Recorder(items)
    cluster.core = _Recorder(items)

    class _Api:
        @staticmethod
        def sanitize_for_serialization(obj):
            return obj

    cluster.api_client = _Api()
    cluster._api_exception = type("ApiException", (Exception,), {})
    return cluster


def test_live_objects_bound_each_request_in_time():
    # Without a timeout a cluster that accepts the connection and never answers hangs the
    # read, and PlatformSource holds its lock meanwhile: every validation waits.
    cluster = _cluster([])
    cluster.live_objects()
    calls = cluster.apps.calls + cluster.core.calls
    assert calls and all(c.get("_request_timeout") for c in calls)


def test_live_objects_keep_at_most_limit_items_per_kind():
    cluster = _cluster([{"metadata": {"name": f"n{i}", "namespace": "x"}} for i in range(3000)])
    assert len(cluster.live_objects(limit=100)) <= 4 * 100


def test_the_model_is_not_rebuilt_when_only_status_changes(tmp_path, monkeypatch):
    import cortex_school.platform_model.source as source_module

    root = write(tmp_path, {"apps/q/qdrant.yaml": REPO["apps/q/qdrant.yaml"]})

    class Repo:
        def sync(self):
            return root

        def head(self):
            return "r1"

    builds = []
    real = source_module.build_platform
    monkeypatch.setattr(source_module, "build_platform", lambda *a, **k: builds.append(1) or real(*a, **k))
    generation = iter(range(1000))

    def live():
        obj = workload("Deployment", "obs", "phoenix", {"app.kubernetes.io/name": "phoenix"})
        n = next(generation)
        obj["metadata"]["resourceVersion"] = str(n)
        obj["status"] = {"observedGeneration": n, "readyReplicas": 1}
        return [obj]

    src = source_module.PlatformSource(lambda: Repo(), live=live)
    src.refresh()
    src.refresh()
    assert len(builds) == 1
