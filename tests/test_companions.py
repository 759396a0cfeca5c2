"""Plans on the platform model: companions of existing workloads from their real records,
files where the repository's conventions put them (next to the target, a folder per
component, listed in the governing kustomization), the gate's companion rules, and a
change that lands through discovery on a real bare repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from cortex_school.clients.cluster.simulated import SimulatedCluster
from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote, list_kustomization_resource
from cortex_school.delivery import argocd_apps_for
from cortex_school.models import Status
from cortex_school.platform_model import load_platform
from cortex_school.platform_model.argocd import simulated_applications
from cortex_school.settings import DeploySettings, PolicySettings
from cortex_school.workers import render_resources
from cortex_school.workers.implement import Implementer, run_implement
from cortex_school.workers.manifest_files import repo_context
from cortex_school.workers.manifests import RenderContext
from cortex_school.workers.placement import place
from cortex_school.workers.planning import Inventory, OfflinePlanner
from cortex_school.workers.planning.companions import resolve_targets
from cortex_school.workers.policy import GateContext, SystemIdentity, check_change, check_plan
from cortex_school.workers.schema_check import SchemaChecker
from tests.factories import make_improvement

REPO = "https://github.com/acme/platform.git"
AUTHOR = "Cortex Online School <school@cortex.ai>"
NAMESPACES = ["knowledge", "tools"]
CTX = RenderContext("0123456789abcdef", "vid00000001", "t")


def write(root: Path, rel: str, docs: list[dict] | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(docs if isinstance(docs, str) else yaml.safe_dump_all(docs))


def workload(kind: str, name: str, ns: str | None, labels: dict, image: str, port: int) -> dict:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, "tier": "backend"}},
                                  "spec": {"containers": [{"name": "c", "image": image,
                                                           "ports": [{"containerPort": port}]}]}}}}


def service(name: str, ns: str, labels: dict, selector: dict, port: int, port_name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": selector, "ports": [{"name": port_name, "port": port}]}}


def a_platform(root: Path) -> Path:
    """A folder-per-component layout applied by an ApplicationSet, a Kustomize-built
    component, and a second workload that shares a label with Qdrant."""
    write(root, "argocd-apps/workloads.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "workloads",
                                                                                    "namespace": "argocd"},
        "spec": {"generators": [{"git": {"repoURL": REPO, "directories": [{"path": "apps/*"}]}}],
                 "template": {"metadata": {"name": "{{path.basename}}"},
                              "spec": {"source": {"repoURL": REPO, "path": "{{path}}", "directory": {"recurse": True}},
                                       "destination": {"namespace": "{{path.basename}}"}}}}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "embeddings",
                                                                                  "namespace": "argocd"},
         "spec": {"source": {"repoURL": REPO, "path": "kustomize/embeddings"},
                  "destination": {"namespace": "knowledge"}}}])
    write(root, "apps/knowledge/qdrant/qdrant.yaml", [
        workload("StatefulSet", "qdrant", None, {"app": "qdrant"}, "qdrant/qdrant:v1.12.4", 6333),
        service("qdrant", "knowledge", {"app": "qdrant"}, {"app": "qdrant"}, 6333, "http")])
    write(root, "apps/knowledge/reranker/reranker.yaml", [
        workload("Deployment", "reranker", "knowledge", {"app": "reranker"}, "ghcr.io/acme/reranker:1.0", 8080)])
    write(root, "apps/tools/n8n/n8n.yaml", [
        workload("Deployment", "n8n", "tools", {"app": "n8n"}, "n8nio/n8n:1.64.0", 5678)])
    write(root, "apps/tools/searxng/searxng.yaml", [
        workload("Deployment", "searxng", "tools", {"app": "searxng"}, "searxng/searxng:2024.11.1", 8080)])
    write(root, "kustomize/embeddings/kustomization.yaml",
          "# embeddings, built with kustomize\nnamespace: knowledge\nresources:\n  - deployment.yaml\n")
    write(root, "kustomize/embeddings/deployment.yaml", [
        workload("Deployment", "embeddings", None, {"app.kubernetes.io/name": "embeddings"},
                 "ghcr.io/acme/embeddings:2.1", 8000)])
    return root


def plan_for(root: Path, description: str, notes: str):
    platform = load_platform(root)
    imp = make_improvement(description, notes=notes)
    return OfflinePlanner("knowledge").plan(imp, Inventory(), platform), platform


def gate(root: Path, manifests: list[dict]) -> list:
    ctx = repo_context(root, GateContext(policy=PolicySettings(allowed_namespaces=NAMESPACES),
                                         system=SystemIdentity.from_policy(PolicySettings(), [])))
    return check_change(manifests, ctx)


def test_targets_are_resolved_by_label_name_and_component(tmp_path):
    platform = load_platform(a_platform(tmp_path))
    refs = [t.ref for t in resolve_targets("selecting the pods labelled app: reranker", platform)]
    assert refs == ["Deployment/knowledge/reranker"]
    refs = [t.ref for t in resolve_targets("Add a PodDisruptionBudget for the Qdrant StatefulSet", platform)]
    assert set(refs) == {"StatefulSet/knowledge/qdrant", "Service/knowledge/qdrant"}
    assert resolve_targets("Deploy something new", platform) == []


def test_a_pdb_for_an_existing_statefulset_uses_its_labels_and_values_and_lands_next_to_it(tmp_path):
    """GIVEN Qdrant running from apps/knowledge/qdrant/ with pods labelled app: qdrant WHEN a
    PDB with maxUnavailable 1 is asked for THEN the plan is that PDB only (the StatefulSet is
    not planned again), it selects app: qdrant in knowledge, the gate passes it, and its file
    sits next to Qdrant's."""
    root = a_platform(tmp_path)
    plan, platform = plan_for(root, "Add a PodDisruptionBudget for the Qdrant StatefulSet",
                              "Create a PodDisruptionBudget in the knowledge namespace selecting the Qdrant pods "
                              "(label app: qdrant) with maxUnavailable: 1.")
    (pdb,) = plan.resources
    assert (pdb.kind, pdb.namespace, pdb.selector, pdb.max_unavailable, pdb.min_available, pdb.companion_of) == (
        "PodDisruptionBudget", "knowledge", {"app": "qdrant"}, 1, None, "StatefulSet/knowledge/qdrant")
    assert "StatefulSet knowledge/qdrant" in plan.summary
    rendered = render_resources(plan, CTX)
    manifests = [m for _, ms in rendered for m in ms]
    assert manifests[0]["spec"]["maxUnavailable"] == 1
    assert check_plan(plan, PolicySettings(allowed_namespaces=NAMESPACES), SystemIdentity.from_policy(
        PolicySettings(), [])) == []
    assert gate(root, manifests) == []
    assert list(place(rendered, platform, "knowledge").files) == ["apps/knowledge/qdrant/qdrant-poddisruptionbudget.yaml"]


def test_an_hpa_for_an_existing_deployment_honours_every_value(tmp_path):
    root = a_platform(tmp_path)
    plan, platform = plan_for(root, "Add a HorizontalPodAutoscaler for the embeddings Deployment",
                              "Create an autoscaling/v2 HorizontalPodAutoscaler targeting Deployment embeddings, "
                              "minReplicas 2, maxReplicas 4, averageUtilization 70 on CPU, with a 5 minute "
                              "scale-down stabilisation window.")
    (hpa,) = plan.resources
    assert (hpa.target, hpa.min_replicas, hpa.max_replicas, hpa.cpu_utilization, hpa.scale_down_seconds) == (
        "embeddings", 2, 4, 70, 300)
    rendered = render_resources(plan, CTX)
    manifests = [m for _, ms in rendered for m in ms]
    assert manifests[0]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                      "name": "embeddings"}
    assert gate(root, manifests) == []
    placement = place(rendered, platform, "knowledge")
    assert list(placement.files) == ["kustomize/embeddings/embeddings-horizontalpodautoscaler.yaml"]
    assert placement.listed == {"kustomize/embeddings/kustomization.yaml": ["embeddings-horizontalpodautoscaler.yaml"]}
    # Without maxReplicas there is nothing to honour: a person chooses.
    plan, _ = plan_for(root, "Add a HorizontalPodAutoscaler for the embeddings Deployment", "Scale on CPU.")
    assert not plan.resources and any("maxReplicas" in s for s in plan.manual_steps)


def test_a_service_monitor_selects_the_services_labels_and_names_what_it_cannot_carry(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Scrape Qdrant's Prometheus metrics with a ServiceMonitor",
                       "Create a ServiceMonitor in knowledge selecting the qdrant Service (label app: qdrant) on port "
                       "http, path /metrics, interval 30s, sending the API key as a bearer token.")
    (sm,) = plan.resources
    assert (sm.kind, sm.selector, sm.ports[0].name, sm.interval, sm.companion_of) == (
        "ServiceMonitor", {"app": "qdrant"}, "http", "30s", "Service/knowledge/qdrant")
    assert any("credentials" in s for s in plan.manual_steps)
    manifests = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert gate(root, manifests) == []


def test_the_gate_holds_companions_to_what_exists_and_to_that_workloads_pods(tmp_path):
    """A companion of an object the repository does not define, of the system's own, in
    another namespace, or selecting another workload's pods too is refused; a budget over an
    existing workload without maxUnavailable >= 1 goes to review."""
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Add a PodDisruptionBudget for the Qdrant StatefulSet", "maxUnavailable: 1")
    (pdb,) = [m for _, ms in render_resources(plan, CTX) for m in ms]

    def with_(annotation: str | None = None, selector: dict | None = None, budget: dict | None = None) -> list:
        m = yaml.safe_load(yaml.safe_dump(pdb))
        if annotation is not None:
            m["metadata"]["annotations"]["cortex-school.io/companion-of"] = annotation
        if selector is not None:
            m["spec"]["selector"]["matchLabels"] = selector
        if budget is not None:
            m["spec"] = {**budget, "selector": m["spec"]["selector"]}
        return gate(root, [m])

    assert with_() == []
    assert any(v.rule == "companion" for v in with_("StatefulSet/knowledge/ghost"))
    assert any(v.rule == "companion" for v in with_("StatefulSet/tools/qdrant"))
    assert any(v.rule == "companion" for v in with_("Secret/knowledge/qdrant"))
    # "tier: backend" is on Qdrant's pods and on the reranker's: it selects both.
    assert any(v.rule == "selector" and "reranker" in v.detail for v in with_(selector={"tier": "backend"}))
    (review,) = with_(budget={"minAvailable": 2})
    assert review.action == "review" and review.rule == "disruption-budget"


def test_what_the_plan_cannot_produce_is_named_and_stops_the_commit(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Run the descheduler", "Deploy registry.k8s.io/descheduler/descheduler:v0.31.0 as a "
                       "CronJob every 30 minutes with a ServiceAccount bound to a ClusterRole.")
    missing = [s for s in plan.manual_steps if s.startswith("not planned: ")]
    assert any("ServiceAccount" in s for s in missing) and any("ClusterRole" in s for s in missing)
    assert [r.kind for r in plan.resources] == ["ScheduledJob"]  # what it could plan, it did


def test_a_kustomization_gets_one_line_and_keeps_the_rest(tmp_path):
    text = "# the prod overlay\nnamespace: ai\nresources:\n  - ../../base # shared\n  - ingress.yaml\n\npatches:\n  - path: p.yaml\n"
    edited = list_kustomization_resource(text, "pdb.yaml")
    assert edited == text.replace("  - ingress.yaml\n", "  - ingress.yaml\n  - pdb.yaml\n")
    assert list_kustomization_resource("namespace: x\n", "a.yaml") == "namespace: x\nresources:\n  - a.yaml\n"


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True,
                          check=True).stdout


def world(store, tmp_path: Path, seed: Path):
    """A bare remote seeded with ``seed``, the simulated cluster over it (reset), and an
    implementer whose sync check is discovery on that cluster."""
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", seed)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "clones", author=AUTHOR)
    cluster = SimulatedCluster(store._redis, repo, {}, simulated_applications)
    cluster.reset()
    cfg = DeploySettings()
    implementer = Implementer(
        planner=OfflinePlanner("knowledge"), repo=repo, schemas=SchemaChecker("1.31.0"),
        policy=PolicySettings(allowed_namespaces=NAMESPACES), co_author=AUTHOR,
        sync_check=lambda root, files, over: argocd_apps_for(cluster, root, files, cfg, overrides=over))
    return remote, repo, cluster, cfg, implementer


@pytest.fixture
def landing(tmp_path, store):
    remote, _, cluster, _, implementer = world(store, tmp_path, a_platform(tmp_path / "seed"))
    yield remote, implementer
    cluster.reset()


def implemented(store, implementer, description: str, notes: str):
    imp = make_improvement(description, notes=notes, video_id="landvid0001")
    store.create(imp, actor="test", reason="test")
    for target in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
        store.transition(imp.id, target, actor="test", reason="test")
    outcome, _ = run_implement(store, imp.id, implementer=implementer, worker="architecture", actor="t@h")
    return imp, outcome


def deployed_and_verified(store, improvement_id: str, cluster, repo, cfg) -> None:
    """Deploy a committed change on the simulated cluster until it is synced, then verify it
    over a health window."""
    from datetime import timedelta

    from cortex_school.clients.cluster.metrics import SimulatedMetrics
    from cortex_school.delivery import Deployer, run_deploy, run_verify
    from cortex_school.models import utcnow
    from cortex_school.settings import ServiceSettings

    deployer = Deployer(cluster=cluster, metrics=SimulatedMetrics(cluster), repo=repo, cfg=cfg,
                        services=ServiceSettings(health_check_duration=60), co_author=AUTHOR)
    now = utcnow()
    step = run_deploy(store, improvement_id, deployer, actor="t@h", now=now)
    for _ in range(3):
        if step.outcome != "waiting":
            break
        step = run_deploy(store, improvement_id, deployer, actor="t@h", now=now)
    assert step.status == "deployed", step.detail
    assert run_verify(store, improvement_id, deployer, actor="t@h", now=now + timedelta(seconds=90)).status == "verified"


def test_a_companion_in_a_kustomize_folder_is_listed_committed_and_applied(store, landing):
    """GIVEN embeddings built by Kustomize WHEN its HPA is implemented THEN the commit holds
    the HPA file and one added line in the kustomization, and the Application that builds
    it is the one recorded to sync."""
    remote, implementer = landing
    imp, outcome = implemented(store, implementer, "Add a HorizontalPodAutoscaler for the embeddings Deployment",
                               "minReplicas 2, maxReplicas 4, 70% on CPU.")
    assert outcome.status == "committed", store.field(imp.id, "review_reason")
    assert store.get(imp.id).delivery.argocd_apps == ["embeddings"]
    kustomization = git(remote, "show", "main:kustomize/embeddings/kustomization.yaml")
    assert kustomization.startswith("# embeddings, built with kustomize\n")
    assert yaml.safe_load(kustomization)["resources"] == ["deployment.yaml", "embeddings-horizontalpodautoscaler.yaml"]
    changed = git(remote, "diff", "--name-only", "main~1", "main").split()
    assert sorted(changed) == ["kustomize/embeddings/embeddings-horizontalpodautoscaler.yaml",
                               "kustomize/embeddings/kustomization.yaml"]


def test_a_new_component_gets_a_folder_of_its_own_and_the_generated_application(store, landing):
    """GIVEN tools keeps one folder per component, applied by an ApplicationSet over apps/*
    (recursive) WHEN a new component is implemented THEN it lands in apps/tools/<name>/ and
    the Application 'tools' applies it."""
    remote, implementer = landing
    imp, outcome = implemented(store, implementer, "Deploy docling-serve to convert PDFs",
                               "Run quay.io/docling-project/docling-serve:v0.5.1 as a Deployment in tools with a "
                               "Service on port 5001.")
    assert outcome.status == "committed", store.field(imp.id, "review_reason")
    files = store.get(imp.id).delivery.git_files
    assert files and all(f.startswith("apps/tools/docling-serve/") for f in files), files
    assert store.get(imp.id).delivery.argocd_apps == ["tools"]


def test_waiting_for_a_namespace_costs_no_fetch_plan_or_gate(store, landing, monkeypatch):
    """GIVEN another change holding the namespace WHEN an improvement waits for it THEN the
    first run plans and stores the plan, and every later run only asks for the lease: no
    git fetch, no planning, no gate (4 waiters used to make 175 full runs in 4 minutes)."""
    from dataclasses import replace

    _, implementer = landing
    held = {"holder": "ffffffffffffffff"}
    waiting = replace(implementer, lease=lambda iid, nss: held["holder"])
    syncs: list[int] = []
    real_sync = waiting.repo.sync
    monkeypatch.setattr(waiting.repo, "sync", lambda: syncs.append(1) or real_sync())
    imp, outcome = implemented(store, waiting, "Add a PodDisruptionBudget for the Qdrant StatefulSet",
                               "maxUnavailable: 1")
    assert outcome.outcome == "waiting" and "one change per namespace" in outcome.detail
    first = len(syncs)
    assert first >= 1 and store.field(imp.id, "plan")
    planner_calls: list[int] = []
    monkeypatch.setattr(waiting.planner, "plan", lambda *a, **k: planner_calls.append(1))
    for _ in range(5):
        outcome, _ = run_implement(store, imp.id, implementer=waiting, worker="architecture", actor="t@h")
        assert outcome.outcome == "waiting"
    assert len(syncs) == first and not planner_calls
    held["holder"] = None  # the other change is done: this one goes on from where it was
    outcome, _ = run_implement(store, imp.id, implementer=waiting, worker="architecture", actor="t@h")
    assert outcome.status == "committed", store.field(imp.id, "review_reason")


def test_prose_alerts_become_one_rule_per_comparison():
    from cortex_school.workers.planning.offline import alerts_written

    rules = alerts_written("Create a PrometheusRule with alerts on longhorn_volume_robustness == 2 for 10m "
                           "(degraded, severity warning) and == 3 (faulted, severity critical).")
    assert [(r.expr, r.duration, r.severity) for r in rules] == [
        ("longhorn_volume_robustness == 2", "10m", "warning"), ("longhorn_volume_robustness == 3", "10m", "critical")]
    assert rules[0].name == "LonghornVolumeRobustnessDegraded" and "faulted" in rules[1].summary
    assert alerts_written("alerts are important") == []


def test_sizes_and_schedules_are_read_as_written():
    from cortex_school.workers.planning.extraction import schedule_in
    from cortex_school.workers.planning.offline import requests_in

    assert requests_in("as a Deployment (1 CPU, 2Gi memory)") == ("1", "2Gi")
    assert requests_in("requesting 100m CPU and 256Mi memory") == ("100m", "256Mi")
    assert requests_in("listens on port 8080, keeps 100m of logs") == (None, None)
    assert schedule_in("as a CronJob every 30 minutes") == "*/30 * * * *"
    assert schedule_in("nightly at 02:30") == "30 2 * * *"


def test_a_scheduled_job_is_a_cronjob_and_a_cluster_wide_controller_is_never_half_planned(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Re-index the knowledge base every night",
                       "Run ghcr.io/acme/reindex:1.4.0 as a CronJob in knowledge nightly at 02:30, running "
                       "`reindex --all --batch 500`.")
    (job,) = plan.resources
    assert (job.kind, job.schedule, job.command) == ("ScheduledJob", "30 2 * * *", ["reindex", "--all", "--batch", "500"])
    (cron,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert cron["kind"] == "CronJob" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert gate(root, [cron]) == []
    plan, _ = plan_for(root, "Run the descheduler", "Deploy registry.k8s.io/descheduler/descheduler:v0.31.0 "
                       "in knowledge as a CronJob every 30 minutes.")
    assert any("cluster-wide RBAC" in s for s in plan.manual_steps if s.startswith("not planned: "))


def test_a_network_policy_for_an_existing_workload_is_its_companion_and_others_pods_go_to_review(tmp_path):
    """GIVEN the reranker running WHEN a policy selecting its pods is asked for THEN it is
    the reranker's companion, admits the labelled pods and the named namespace, and passes;
    a policy over every pod of the namespace, or over pods of workloads it does not serve,
    goes to a person (it cuts their other traffic off)."""
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Allow only the API to reach the reranker with a NetworkPolicy",
                       "Add a NetworkPolicy in knowledge selecting app: reranker that allows ingress on TCP 8080 "
                       "only from pods labelled app: rag-api in the same namespace and from pods in the "
                       "observability namespace.")
    (policy,) = plan.resources
    assert (policy.selector, policy.companion_of) == ({"app": "reranker"}, "Deployment/knowledge/reranker")
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert {"podSelector": {"matchLabels": {"app": "rag-api"}}} in manifest["spec"]["ingress"][0]["from"]
    assert gate(root, [manifest]) == []  # nothing isolates the reranker yet: the policy only restricts
    # Once the namespace denies by default, admitting the observability namespace opens what
    # that policy keeps closed: a person's call.
    write(root, "apps/knowledge/deny.yaml", [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                              "metadata": {"name": "default-deny", "namespace": "knowledge"},
                                              "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}])
    (admits,) = gate(root, [manifest])
    assert (admits.rule, admits.action) == ("network-policy", "review") and "another namespace" in admits.detail
    (tmp_path / "apps/knowledge/deny.yaml").unlink()
    everything = yaml.safe_load(yaml.safe_dump(manifest))
    everything["spec"]["podSelector"] = {}
    del everything["metadata"]["annotations"]["cortex-school.io/companion-of"]
    assert any(v.action == "review" and "every pod of namespace knowledge" in v.detail
               for v in gate(root, [everything]) if v.rule == "network-policy")
    wider = yaml.safe_load(yaml.safe_dump(manifest))
    wider["spec"]["podSelector"] = {"matchLabels": {"tier": "backend"}}
    assert any(v.rule == "network-policy" and "qdrant" in v.detail.lower() for v in gate(root, [wider]))


def test_an_edit_of_what_the_system_does_not_own_stops_the_plan_and_a_floor_below_replicas_passes(tmp_path):
    """An HPA whose proposal also says "drop the fixed replicas field" is not the whole
    change (the Deployment is not ours); a budget of minAvailable 1 over a workload of 2
    replicas leaves one to evict and passes, minAvailable 2 does not."""
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "CPU-based HorizontalPodAutoscaler for the reranker between 2 and 8 replicas",
                       "autoscaling/v2 HPA targeting 70% CPU utilisation; drop the fixed replicas field so Argo CD "
                       "and the HPA do not fight.")
    (hpa,) = plan.resources
    assert (hpa.min_replicas, hpa.max_replicas, hpa.cpu_utilization) == (2, 8, 70)
    assert any("drop the fixed replicas field" in s for s in plan.manual_steps if s.startswith("not planned: "))
    plan, _ = plan_for(root, "Add a PodDisruptionBudget to the reranker Deployment",
                       "minAvailable: 1 with the selector app: reranker.")
    (pdb,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert pdb["spec"]["minAvailable"] == 1 and gate(root, [pdb]) == []  # the reranker runs 2 replicas
    pdb["spec"]["minAvailable"] = 2
    assert [v.rule for v in gate(root, [pdb])] == ["disruption-budget"]


def test_a_keda_scaled_object_for_an_existing_deployment_and_what_the_gate_refuses_in_one(tmp_path):
    """GIVEN the reranker WHEN a ScaledObject with a Prometheus trigger is asked for THEN it
    scales the reranker with the written counts, query, threshold and address, and passes;
    an address outside the cluster, an authenticationRef or another trigger type does not."""
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Scale the reranker with a KEDA ScaledObject",
                       "Create a ScaledObject in knowledge targeting Deployment reranker with minReplicaCount 1 and "
                       "maxReplicaCount 3, using a prometheus trigger on sum(rate(http_requests_total[2m])) with "
                       "threshold 20 and serverAddress http://kps-prometheus.observability.svc:9090.")
    (scaled,) = plan.resources
    assert (scaled.kind, scaled.target, scaled.min_replicas, scaled.max_replicas) == ("ScaledObject", "reranker", 1, 3)
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert manifest["spec"]["triggers"][0]["metadata"] == {
        "serverAddress": "http://kps-prometheus.observability.svc:9090",
        "query": "sum(rate(http_requests_total[2m]))", "threshold": "20"}
    assert SchemaChecker("1.31.0").check_all([manifest]) == []
    # minReplicaCount 1 takes the reranker (2 replicas) below what its owners set: a person's call
    assert [(v.rule, v.action) for v in gate(root, [manifest])] == [("autoscaler", "review")]
    manifest["spec"]["minReplicaCount"] = 2
    assert gate(root, [manifest]) == []

    def changed(**trigger) -> list:
        m = yaml.safe_load(yaml.safe_dump(manifest))
        m["spec"]["triggers"][0].update(trigger)
        return [v.rule for v in gate(root, [m])]

    assert "autoscaler" in changed(metadata={"serverAddress": "http://attacker.example:9090", "query": "up",
                                             "threshold": "1"})
    assert "autoscaler" in changed(authenticationRef={"name": "steal-secrets"})
    assert "autoscaler" in changed(type="external", metadata={"scalerAddress": "evil:443"})
    zero = yaml.safe_load(yaml.safe_dump(manifest))
    zero["spec"]["minReplicaCount"] = 0  # scaling another team's workload to zero
    assert "resources" in [v.rule for v in gate(root, [zero])]
    other = yaml.safe_load(yaml.safe_dump(manifest))
    other["spec"]["scaleTargetRef"]["name"] = "qdrant"  # not the workload it names as companion-of
    assert "autoscaler" in [v.rule for v in gate(root, [other])]


def test_a_network_policy_with_ports_per_source_gets_one_rule_each(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Restrict reranker access with a NetworkPolicy",
                       "Add a NetworkPolicy in knowledge selecting app: reranker that allows TCP 8080 only from the "
                       "knowledge and tools namespaces, and TCP 9121 from pods labelled app: prometheus.")
    (policy,) = plan.resources
    assert policy.companion_of == "Deployment/knowledge/reranker"
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert [([p.get("namespaceSelector", p.get("podSelector")) for p in r["from"]], [p["port"] for p in r["ports"]])
            for r in manifest["spec"]["ingress"]] == [
        ([{"matchLabels": {"kubernetes.io/metadata.name": "knowledge"}},
          {"matchLabels": {"kubernetes.io/metadata.name": "tools"}}], [8080]),
        ([{"matchLabels": {"app": "prometheus"}}], [9121])]
    assert gate(root, [manifest]) == []


def test_the_llm_planner_is_shown_the_targets_records_as_data(tmp_path):
    """With an LLM backend the model gets each target's ref, labels, selector, ports and file
    inside the data block (never as instructions), and the rule to plan companions."""
    import json

    from cortex_school.experts.prompts import DATA_CLOSE, DATA_OPEN
    from cortex_school.workers.planning.llm import plan_message, plan_system_prompt

    platform = load_platform(a_platform(tmp_path))
    imp = make_improvement("Add a PodDisruptionBudget for the reranker Deployment", notes="maxUnavailable: 1")
    message = plan_message(imp, Inventory(), "knowledge", platform)
    data = json.loads(message.split(DATA_OPEN, 1)[1].split(DATA_CLOSE, 1)[0])
    (target,) = [t for t in data["targets"] if t["ref"] == "Deployment/knowledge/reranker"]
    assert target["selector"] == {"app": "reranker"} and target["file"] == "apps/knowledge/reranker/reranker.yaml"
    assert "companion_of" in plan_system_prompt("architecture")


def test_a_new_component_folder_is_applied_by_the_application_its_application_set_will_generate(store, tmp_path):
    """GIVEN one Application per component folder, generated by an ApplicationSet over
    apps/*/* WHEN a new component is implemented THEN its new folder is covered by the
    Application the set will generate for it, the commit records that name, and deploy on
    the simulated cluster (whose ArgoCD generates it from the merged folder) verifies it."""
    seed = a_platform(tmp_path / "seed")
    appset = seed / "argocd-apps/workloads.yaml"
    appset.write_text(appset.read_text().replace("path: apps/*\n", "path: apps/*/*\n")
                      .replace("name: '{{path.basename}}'", "name: '{{path[1]}}-{{path.basename}}'")
                      .replace("namespace: '{{path.basename}}'", "namespace: '{{path[1]}}'")
                      .replace("recurse: true", "recurse: false"))
    _, repo, cluster, cfg, implementer = world(store, tmp_path, seed)
    assert "tools-docling-serve" not in {s.name for s in cluster.applications()}
    imp, outcome = implemented(store, implementer, "Deploy docling-serve to convert PDFs",
                               "Run quay.io/docling-project/docling-serve:v0.5.1 as a Deployment in tools with a "
                               "Service on port 5001.")
    assert outcome.status == "committed", store.field(imp.id, "review_reason")
    assert store.get(imp.id).delivery.argocd_apps == ["tools-docling-serve"]
    deployed_and_verified(store, imp.id, cluster, repo, cfg)
    cluster.reset()


def test_a_new_workload_with_a_service_monitor_gets_one_and_honor_labels_is_named(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Deploy the batch metrics gateway", "Run ghcr.io/acme/gateway:1.4.0 in tools on port 9091 "
                       "with a ServiceMonitor.")
    assert [r.kind for r in plan.resources] == ["Deployment", "Service", "ServiceMonitor"]
    assert not [s for s in plan.manual_steps if s.startswith("not planned: ")]
    manifests = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert gate(root, manifests) == []
    plan, _ = plan_for(root, "Deploy the batch metrics gateway", "Run ghcr.io/acme/gateway:1.4.0 in tools on port 9091 "
                       "with a ServiceMonitor (honorLabels true).")
    assert any("honorLabels" in s for s in plan.manual_steps if s.startswith("not planned: "))


def test_only_kinds_that_run_no_pods_may_be_companions(tmp_path):
    """A Deployment or Service annotated companion-of the reranker would escape the rule
    that a change selects only its own pods (a zero-replica Deployment with the reranker's
    labels plus a Service would publish the reranker's pods): refused."""
    root = a_platform(tmp_path)
    from cortex_school.workers.plan import ImplementationPlan, PlannedResource, Port

    plan = ImplementationPlan(summary="x", resources=[
        PlannedResource(kind="Deployment", name="shadow", namespace="knowledge", image="ghcr.io/x/y:1.0",
                        replicas=0, selector={"app": "reranker"}, companion_of="Deployment/knowledge/reranker"),
        PlannedResource(kind="Service", name="shadow", namespace="knowledge", ports=[Port(number=8080)],
                        selector={"app": "reranker"}, companion_of="Deployment/knowledge/reranker")])
    manifests = [m for _, ms in render_resources(plan, CTX) for m in ms]
    rules = [(v.object, v.rule) for v in gate(root, manifests)]
    assert ("Deployment/knowledge/shadow", "companion") in rules and ("Service/knowledge/shadow", "companion") in rules
    assert ("Service/knowledge/shadow", "selector") in rules  # and it selects the reranker's pods


def test_a_new_workload_with_a_volume_and_a_tls_ingress_lands_whole(store, tmp_path):
    """GIVEN a proposal for a new workload with a sized PVC mounted at a path and an Ingress
    for a host with a certificate from a named issuer WHEN implemented THEN one commit holds
    the Deployment (Recreate, the claim mounted there), its claim, the Service, the
    Ingress (class as written, TLS from the Certificate's own Secret) and the Certificate;
    the gate passes it and it verifies. Without a port the Ingress is named as not planned."""
    notes = ("Run louislam/uptime-kuma:1.23.15 as a Deployment in tools on port 3001 with a 2Gi longhorn PVC "
             "mounted at /app/data, requesting 100m CPU and 256Mi memory, with an Ingress for "
             "status.cortex.local (class traefik, certificate from cortex-ca).")
    root = a_platform(tmp_path / "seed")
    plan, _ = plan_for(root, "Deploy Uptime Kuma for a status page", notes)
    assert not [s for s in plan.manual_steps if s.startswith("not planned: ")], plan.manual_steps
    manifests = {m["kind"]: m for _, ms in render_resources(plan, CTX) for m in ms}
    assert set(manifests) == {"Deployment", "PersistentVolumeClaim", "Service", "Ingress", "Certificate"}
    deployment = manifests["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "uptime-kuma-data"}} in pod["volumes"]
    assert {"name": "data", "mountPath": "/app/data"} in pod["containers"][0]["volumeMounts"]
    assert manifests["PersistentVolumeClaim"]["spec"] == {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}, "storageClassName": "longhorn"}
    ingress = manifests["Ingress"]["spec"]
    assert ingress["ingressClassName"] == "traefik"
    assert ingress["tls"] == [{"hosts": ["status.cortex.local"],
                               "secretName": manifests["Certificate"]["spec"]["secretName"]}]
    assert manifests["Certificate"]["spec"]["issuerRef"]["name"] == "cortex-ca"
    assert gate(root, list(manifests.values())) == []

    _, repo, cluster, cfg, implementer = world(store, tmp_path, root)
    imp, outcome = implemented(store, implementer, "Deploy Uptime Kuma for a status page", notes)
    assert outcome.status == "committed", store.field(imp.id, "review_reason")
    files = store.get(imp.id).delivery.git_files
    assert files and all(f.startswith("apps/tools/uptime-kuma/") for f in files), files
    deployed_and_verified(store, imp.id, cluster, repo, cfg)
    cluster.reset()

    plan, _ = plan_for(root, "Deploy Uptime Kuma for a status page", notes.replace(" on port 3001", ""))
    assert any("Ingress for status.cortex.local" in s and "no port" in s for s in plan.manual_steps)


def cronjob(name: str, ns: str, account: str | None) -> dict:
    pod = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "aquasec/trivy:0.57.0"}],
           **({"serviceAccountName": account} if account else {})}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": ns},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": name}}, "spec": pod}}}}}


def test_a_role_for_an_existing_workload_binds_the_account_it_already_runs_as(store, tmp_path):
    """GIVEN a CronJob running as its own ServiceAccount WHEN it is to read pods and their
    logs THEN the plan is a Role (get/list/watch on pods and pods/log) and a RoleBinding to
    that account, both its companions; the gate passes them and the change lands. A
    workload on the namespace's default account gets no Role (it would reach every pod on
    default); binding another account, or one other workloads share, does not pass."""
    seed = a_platform(tmp_path / "seed")
    write(seed, "apps/tools/sweep/sweep.yaml", [cronjob("image-sweep", "tools", "sweeper"),
                                                cronjob("other-job", "tools", "shared"),
                                                cronjob("lazy-job", "tools", None)])
    write(seed, "apps/tools/sweep/shared-user.yaml", [cronjob("second-user", "tools", "shared")])
    notes = "Give the image-sweep CronJob a Role to get, list and watch pods and pod logs in tools."
    plan, _ = plan_for(seed, "Let the image sweep read pods", notes)
    assert [(r.kind, r.subject, r.companion_of) for r in plan.resources] == [
        ("Role", None, "CronJob/tools/image-sweep"), ("RoleBinding", "sweeper", "CronJob/tools/image-sweep")]
    (rule,) = plan.resources[0].rbac_rules
    assert (rule.api_groups, sorted(rule.resources), rule.verbs) == ([""], ["pods", "pods/log"], ["get", "list", "watch"])
    manifests = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert gate(seed, manifests) == []

    def rebound(account: str, companion: str = "CronJob/tools/image-sweep") -> list:
        ms = yaml.safe_load(yaml.safe_dump(manifests))
        ms[1]["subjects"][0]["name"] = account
        for m in ms:
            m["metadata"]["annotations"]["cortex-school.io/companion-of"] = companion
        return [(v.rule, v.action) for v in gate(seed, ms)]

    assert ("rbac-binding", "refuse") in rebound("shared")  # another workload's account
    assert ("rbac-binding", "review") in rebound("shared", "CronJob/tools/other-job")  # shared with second-user
    assert ("rbac-binding", "refuse") in rebound("default", "CronJob/tools/lazy-job")
    plan, _ = plan_for(seed, "Let the lazy job read pods", "Give the lazy-job CronJob read-only access to pods.")
    assert not plan.resources and any("default ServiceAccount" in s for s in plan.manual_steps)

    _, _, cluster, _, implementer = world(store, tmp_path, seed)
    imp, outcome = implemented(store, implementer, "Let the image sweep read pods", notes)
    assert outcome.status == "committed", store.field(imp.id, "review_reason")
    assert all(f.startswith("apps/tools/sweep/") for f in store.get(imp.id).delivery.git_files)
    cluster.reset()


def test_thresholds_per_severity_become_rules_and_a_victoriametrics_platform_gets_vmrules(tmp_path):
    """"warning above 10,000 for 10 minutes, critical above 100,000" per group and topic:
    one rule per severity, aggregated by the labels named, the second taking the first's
    duration. On a repository that keeps its rules as VMRules (and none as PrometheusRules)
    the rules are a VMRule, which the gate and its schema pass; a setting of what already
    runs ("enable X in the cluster property") is named as an edit, not done."""
    from cortex_school.workers.planning.offline import alerts_written

    rules = alerts_written("Add a rule on redpanda_kafka_consumer_group_lag_max per group and topic: warning above "
                           "10,000 messages for 10 minutes, critical above 100,000.")
    assert [(r.expr, r.duration, r.severity) for r in rules] == [
        ("max by (group, topic) (redpanda_kafka_consumer_group_lag_max) > 10000", "10m", "warning"),
        ("max by (group, topic) (redpanda_kafka_consumer_group_lag_max) > 100000", "10m", "critical")]
    assert len({r.name for r in rules}) == 2
    root = a_platform(tmp_path)
    notes = ("Add an alert on queue_depth_total: warning above 500 for 5 minutes, critical above 5,000 for 15 minutes.")
    plan, _ = plan_for(root, "Alert on the queue depth", notes)
    assert [r.kind for r in plan.resources] == ["PrometheusRule"]
    write(root, "apps/knowledge/rules.yaml", [{"apiVersion": "operator.victoriametrics.com/v1beta1", "kind": "VMRule",
                                               "metadata": {"name": "existing", "namespace": "knowledge"},
                                               "spec": {"groups": [{"name": "g", "rules": [
                                                   {"alert": "Old", "expr": "up == 0"}]}]}}])
    plan, _ = plan_for(root, "Alert on the queue depth", notes)
    (rule,) = plan.resources
    assert rule.kind == "VMRule" and [a.duration for a in rule.alerts] == ["5m", "15m"]
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert manifest["apiVersion"] == "operator.victoriametrics.com/v1beta1"
    assert gate(root, [manifest]) == [] and SchemaChecker("1.31.0").check_all([manifest]) == []
    manifest["spec"]["groups"][0]["rules"][0]["alert"] = "Old"  # the repository's VMRule alerts count
    assert "recording-rule" in [v.rule for v in gate(root, [manifest])]
    plan, _ = plan_for(root, "Alert on the queue depth", "Enable queue_depth in the broker's cluster property, then "
                       + notes[0].lower() + notes[1:])
    assert any(s.startswith("not planned: ") and "cluster property" in s for s in plan.manual_steps)
