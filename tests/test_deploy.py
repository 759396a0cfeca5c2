"""Deploy, verify and roll back through the official kubernetes client against a loopback
API server (pytest-httpserver answering like the API server), with a real bare GitOps
remote and the real Redis."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from cortex_school.clients.cluster import AppState, path_covers
from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster
from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote
from cortex_school.delivery import Deployer, run_deploy, run_rollback, run_verify, argocd_apps_for
from cortex_school.models import Decision, Status, utcnow
from cortex_school.settings import DeploySettings, PolicySettings, ServiceSettings
from cortex_school.workers.implement import Implementer, run_implement
from cortex_school.workers.planning import OfflinePlanner
from cortex_school.workers.schema_check import SchemaChecker
from tests.factories import make_improvement
from tests.fake_kube import FakeApp, FakeKube, FakeWorkload, kube_client

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "platform" / "gitops"
AUTHOR = "Cortex Online School <school@cortex.ai>"
EXPORTER = {"app.kubernetes.io/name": "redis-exporter"}


class QuietMetrics:
    """Prometheus is tested against a real server in test_prometheus; here: fixed figures."""

    name = "fixed"

    def error_rate(self, namespace, service):
        return 0.001

    def p95_latency(self, namespace, service):
        return 0.05


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def store(any_store):
    """Deploy, verify and roll back run on either state store."""
    return any_store


@pytest.fixture
def kube(httpserver):
    fake = FakeKube()
    fake.apps["cortex-system-apps"] = FakeApp(path="apps/cortex-system", revision="seed")
    fake.apps["monitoring-apps"] = FakeApp(path="apps/monitoring", revision="seed")
    # The platform the improvement depends on: Redis in cortex.
    fake.workloads[("Deployment", "cortex", "redis")] = FakeWorkload({"app.kubernetes.io/name": "redis"})
    fake.services[("cortex", "redis")] = {"app.kubernetes.io/name": "redis"}
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    fake.url = httpserver.url_for("/")
    return fake


@pytest.fixture
def world(tmp_path, kube, store):
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", SEED)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "clones", author=AUTHOR)
    cluster = KubernetesCluster(api_client=kube_client(kube.url))
    cfg = DeploySettings(sync_timeout_seconds=600)
    services = ServiceSettings(health_check_duration=300,
                               alert_slack_webhook=kube.url.rstrip("/") + "/hooks/slack")
    implementer = Implementer(
        planner=OfflinePlanner(), repo=repo, schemas=SchemaChecker("1.31.0"),
        policy=PolicySettings(allowed_namespaces=["cortex-system", "cortex", "monitoring"]),
        co_author=AUTHOR, sync_check=lambda root, files, over: argocd_apps_for(cluster, root, files, cfg, overrides=over))
    deployer = Deployer(cluster=cluster, metrics=QuietMetrics(), repo=repo, cfg=cfg,
                        services=services, co_author=AUTHOR)
    return remote, implementer, deployer


def committed_exporter(store, world, video="deployvid01"):
    remote, implementer, _ = world
    imp = make_improvement(
        "Deploy redis_exporter next to Redis with a ServiceMonitor", video_id=video,
        category="monitoring", type="implementation", relevance=0.95,
        notes="Add the oliver006/redis_exporter:v1.62.0 container in cortex-system listening on "
              "port 9121 next to Redis, and create a ServiceMonitor in monitoring that scrapes it "
              "every 30s.")
    store.create(imp, actor="test", reason="test")
    decision = Decision(approved=True, reasons=["test"], decided_by="auto-approval-gate")
    for target in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
        store.transition(imp.id, target, actor="test", reason="test",
                         fields={"decision": decision.model_dump_json()})
    outcome, result = run_implement(store, imp.id, implementer=implementer, worker="monitoring",
                                    actor="t@h")
    assert outcome.status == "committed", outcome.detail
    return imp, result


def deploy_until_synced(store, world, kube, imp, result, t0):
    _, _, deployer = world
    head = result.merge_commit
    for app in ("cortex-system-apps", "monitoring-apps"):
        kube.sync_to(app, head)
    first = run_deploy(store, imp.id, deployer, actor="t@h", now=t0)
    assert first.outcome == "waiting" and "OutOfSync" in first.detail
    second = run_deploy(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=10))
    assert second.outcome == "done", second.detail
    return second


def test_a_healthy_rollout_is_deployed_then_verified(store, world, kube):
    imp, result = committed_exporter(store, world)
    kube.workloads[("Deployment", "cortex-system", "redis-exporter")] = FakeWorkload(EXPORTER)
    kube.services[("cortex-system", "redis-exporter")] = EXPORTER
    t0 = utcnow()
    deploy_until_synced(store, world, kube, imp, result, t0)
    fields = store.raw_fields(imp.id)
    assert fields["status"] == "deployed"
    assert fields["argocd_sync_revision"] == result.merge_commit
    # The hard refresh: a merge patch of the annotation on each Application.
    patches = [r for r in kube.requests if r["method"] == "PATCH"]
    assert {r["path"] for r in patches} == {
        "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/cortex-system-apps",
        "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/monitoring-apps"}
    assert all(r["content_type"] == "application/merge-patch+json" for r in patches)
    assert patches[0]["body"] == {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}

    _, _, deployer = world
    early = run_verify(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=40))
    assert early.outcome == "waiting" and "healthy so far" in early.detail
    done = run_verify(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=320))
    assert done.outcome == "done" and store.get(imp.id).status is Status.VERIFIED
    report = json.loads(store.raw_fields(imp.id)["health_report"])
    assert {r["check"]: r["outcome"] for r in report["results"]} == {
        "pods": "passed", "readiness": "passed", "metrics": "passed", "logs": "passed",
        "dependencies": "passed"}
    pod_queries = [r["query"] for r in kube.requests if r["path"].endswith("/pods")]
    assert {"labelSelector": "app.kubernetes.io/name=redis-exporter"} in pod_queries
    logs = [r for r in kube.requests if r["path"].endswith("/log")]
    assert logs and int(logs[-1]["query"]["sinceSeconds"]) <= 300
    assert any(r["path"] == "/api/v1/namespaces/cortex/endpoints/redis" for r in kube.requests)


def test_a_crash_looping_pod_is_rolled_back_and_the_revert_lands(store, world, kube):
    remote, _, deployer = world
    imp, result = committed_exporter(store, world, video="deployvid02")
    kube.workloads[("Deployment", "cortex-system", "redis-exporter")] = FakeWorkload(EXPORTER, crashloop=True)
    kube.services[("cortex-system", "redis-exporter")] = EXPORTER
    t0 = utcnow()
    deploy_until_synced(store, world, kube, imp, result, t0)
    verdict = run_verify(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=40))
    assert verdict.outcome == "failed" and "CrashLoopBackOff" in verdict.detail
    assert "panic:" in verdict.detail  # the log check saw it too

    t1 = t0 + timedelta(seconds=45)
    step = run_rollback(store, imp.id, deployer, reason=verdict.detail, actor="t@h",
                        breaker_limit=3, breaker_window=timedelta(hours=1), now=t1)
    assert step.outcome == "waiting"
    fields = store.raw_fields(imp.id)
    revert = fields["rollback_commit"]
    assert git(remote, "rev-parse", "main").strip() == revert
    assert f"Reverts-Improvement: {imp.id}" in git(remote, "log", "-1", "--format=%B", revert)
    tree = git(remote, "ls-tree", "-r", "--name-only", "main")
    assert not any(f in tree for f in json.loads(fields["git_files"]))  # files gone from main
    for app in ("cortex-system-apps", "monitoring-apps"):
        kube.sync_to(app, revert)
    assert run_rollback(store, imp.id, deployer, reason="x", actor="t@h", breaker_limit=3,
                        breaker_window=timedelta(hours=1), now=t1 + timedelta(seconds=5)).outcome == "waiting"
    done = run_rollback(store, imp.id, deployer, reason="x", actor="t@h", breaker_limit=3,
                        breaker_window=timedelta(hours=1), now=t1 + timedelta(seconds=10))
    assert done.outcome == "done" and "healthy again" in done.detail
    fields = store.raw_fields(imp.id)
    assert fields["status"] == "failed" and "CrashLoopBackOff" in fields["failure_reason"]
    assert fields["failed_at"] and fields["rollback_healthy"] == "true"
    (entry,) = store.rollback_log()
    assert entry["improvement_id"] == imp.id and "CrashLoopBackOff" in entry["reason"]
    hook = [r for r in kube.requests if r["path"] == "/hooks/slack"]
    assert hook and "rollback performed" in hook[-1]["body"]["text"] and revert in hook[-1]["body"]["text"]
    # A second rollback of the same improvement does nothing.
    commits = git(remote, "rev-list", "--count", "main")
    again = run_rollback(store, imp.id, deployer, reason="again", actor="t@h", breaker_limit=3,
                         breaker_window=timedelta(hours=1))
    assert again.outcome == "skipped" and git(remote, "rev-list", "--count", "main") == commits
    assert len(store.rollback_log()) == 1


def test_an_application_that_never_syncs_times_out_and_is_rolled_back(store, world, kube):
    _, _, deployer = world
    imp, result = committed_exporter(store, world, video="deployvid03")
    kube.sync_to("cortex-system-apps", None)
    kube.sync_to("monitoring-apps", result.merge_commit)
    t0 = utcnow()
    assert run_deploy(store, imp.id, deployer, actor="t@h", now=t0).outcome == "waiting"
    assert run_deploy(store, imp.id, deployer, actor="t@h",
                      now=t0 + timedelta(seconds=300)).outcome == "waiting"
    late = run_deploy(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=601))
    assert late.outcome == "failed" and "did not sync" in late.detail and "cortex-system-apps" in late.detail
    step = run_rollback(store, imp.id, deployer, reason=late.detail, actor="t@h", breaker_limit=3,
                        breaker_window=timedelta(hours=1), now=t0 + timedelta(seconds=602))
    assert step.outcome == "waiting"
    # The revert never syncs either: after the timeout the system is declared unhealthy,
    # a critical alert goes out and auto-approval pauses.
    final = run_rollback(store, imp.id, deployer, reason="x", actor="t@h", breaker_limit=3,
                         breaker_window=timedelta(hours=1), now=t0 + timedelta(seconds=1300))
    assert final.outcome == "done" and "STILL UNHEALTHY" in final.detail
    assert store.flags()["auto_approve_none"] is True
    alert = store.alerts()[0]
    assert alert["level"] == "critical"


def test_a_folder_argocd_does_not_sync_is_an_error_at_implementation_time(store, world, kube):
    kube.apps["cortex-system-apps"] = FakeApp(path="apps/cortex-system/base")
    remote = world[0]
    before = git(remote, "rev-parse", "main").strip()
    imp = make_improvement(
        "Deploy redis_exporter next to Redis", video_id="deployvid04", category="monitoring",
        type="implementation", relevance=0.95,
        notes="Add oliver006/redis_exporter:v1.62.0 in cortex-system listening on port 9121.")
    store.create(imp, actor="test", reason="test")
    for target in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
        store.transition(imp.id, target, actor="test", reason="test")
    outcome, result = run_implement(store, imp.id, implementer=world[1], worker="monitoring", actor="t@h")
    assert outcome.status == "pending_review" and result is None
    reason = store.raw_fields(imp.id)["review_reason"]
    assert "no ArgoCD Application applies apps/cortex-system/" in reason, reason
    assert "cortex-system-apps: path apps/cortex-system/base" in reason  # what exists, to fix it
    assert git(remote, "rev-parse", "main").strip() == before


def test_path_coverage_rules():
    app = AppState("a", "Synced", "x", "Healthy", "apps/cortex", recurse=False)
    assert path_covers(app, "apps/cortex") and not path_covers(app, "apps/cortex/sub")
    assert path_covers(AppState("a", "Synced", "x", "Healthy", "apps", recurse=True), "apps/cortex")
    assert not path_covers(AppState("a", "Synced", "x", "Healthy", "apps", recurse=False), "apps/cortex")


def test_rollback_disabled_flags_the_failure_without_reverting(store, world, kube):
    remote, _, deployer = world
    imp, result = committed_exporter(store, world, video="deployvid05")
    deployer.services = deployer.services.model_copy(update={"rollback_enabled": False})
    head = git(remote, "rev-parse", "main").strip()
    step = run_rollback(store, imp.id, deployer, reason="pods crash", actor="t@h", breaker_limit=3,
                        breaker_window=timedelta(hours=1))
    fields = store.raw_fields(imp.id)
    assert step.outcome == "done" and fields["status"] == "failed"
    assert fields["rollback_status"] == "disabled" and "rollback_commit" not in fields
    assert git(remote, "rev-parse", "main").strip() == head
    assert store.rollback_log() == []


def test_more_than_three_rollbacks_in_an_hour_pause_auto_approval(store, world, kube):
    _, _, deployer = world
    imp, result = committed_exporter(store, world, video="deployvid06")
    now = utcnow()
    for n in range(3):
        store.log_rollback(f"{n:016x}", "earlier", at=now - timedelta(minutes=10 + n))
    assert store.flags()["auto_approve_none"] is False
    run_rollback(store, imp.id, deployer, reason="bad", actor="t@h", breaker_limit=3,
                 breaker_window=timedelta(hours=1), now=now)
    kube.sync_to("cortex-system-apps", store.raw_fields(imp.id)["rollback_commit"])
    kube.sync_to("monitoring-apps", store.raw_fields(imp.id)["rollback_commit"])
    for app in kube.apps.values():  # the refresh was requested during the first step
        app.annotations.pop("argocd.argoproj.io/refresh", None)
    done = run_rollback(store, imp.id, deployer, reason="bad", actor="t@h", breaker_limit=3,
                        breaker_window=timedelta(hours=1), now=now + timedelta(seconds=5))
    assert done.outcome == "done" and "healthy again" in done.detail
    assert store.flags()["auto_approve_none"] is True
    assert "circuit breaker" in store.flag_reason("auto_approve_none")


@pytest.mark.cluster
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no real cluster (set KUBECONFIG)")
def test_the_real_cluster_answers_for_argocd_and_pods():
    """Opt-in: against a real K3s with ArgoCD. Nothing else here claims cluster coverage."""
    cluster = KubernetesCluster(argocd_namespace=os.environ.get("ARGOCD_NAMESPACE", "argocd"))
    app = cluster.application(os.environ.get("CORTEX_TEST_APP", "cortex-system-apps"))
    assert app is not None and app.sync_status in ("Synced", "OutOfSync", "Unknown")
    assert isinstance(cluster.pods("kube-system", {}), list)


def test_synced_but_still_progressing_is_waited_for_not_judged(store, world, kube):
    _, _, deployer = world
    imp, result = committed_exporter(store, world, video="deployvid07")
    for app in ("cortex-system-apps", "monitoring-apps"):
        kube.sync_to(app, result.merge_commit)
    kube.apps["cortex-system-apps"].health = "Progressing"
    t0 = utcnow()
    run_deploy(store, imp.id, deployer, actor="t@h", now=t0)
    step = run_deploy(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=10))
    assert step.outcome == "waiting" and "Progressing" in step.detail
    kube.apps["cortex-system-apps"].health = "Healthy"
    assert run_deploy(store, imp.id, deployer, actor="t@h",
                      now=t0 + timedelta(seconds=20)).outcome == "done"


def test_applications_in_any_namespace_are_discovered_synced_and_verified(store, tmp_path, kube):
    """GIVEN ArgoCD keeping the monitoring Application in namespace team-apps (its
    'applications in any namespace') WHEN the exporter change is implemented with
    ARGOCD_APP_NAMESPACES=team-apps THEN it is recorded as team-apps/monitoring-apps, synced
    and verified there; without the setting that folder has no Application; with '*' the
    cluster-wide listing finds it too."""
    kube.apps["team-apps/monitoring-apps"] = FakeApp(path="apps/monitoring", revision="seed", namespace="team-apps")
    del kube.apps["monitoring-apps"]
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", SEED)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "clones", author=AUTHOR)
    cfg = DeploySettings(sync_timeout_seconds=600)
    files = ["apps/cortex-system/x-configmap.yaml", "apps/monitoring/x-servicemonitor.yaml"]
    over = {f: "kind: ConfigMap\n" for f in files}
    alone = KubernetesCluster(api_client=kube_client(kube.url))
    apps, problems = argocd_apps_for(alone, repo.sync(), files, cfg, overrides=over)
    assert apps == ["cortex-system-apps"] and "apps/monitoring/x-servicemonitor.yaml" in problems[0]
    for namespaces in (("team-apps",), ("*",)):
        cluster = KubernetesCluster(api_client=kube_client(kube.url), app_namespaces=namespaces)
        assert argocd_apps_for(cluster, repo.sync(), files, cfg, overrides=over) == (
            ["cortex-system-apps", "team-apps/monitoring-apps"], [])
    with pytest.raises(Exception, match="ARGOCD_APP_NAMESPACES"):
        KubernetesCluster(api_client=kube_client(kube.url), app_namespaces=("team-apps",)).application("kube-system/x")

    implementer = Implementer(
        planner=OfflinePlanner(), repo=repo, schemas=SchemaChecker("1.31.0"),
        policy=PolicySettings(allowed_namespaces=["cortex-system", "cortex", "monitoring"]), co_author=AUTHOR,
        sync_check=lambda root, fs, o: argocd_apps_for(cluster, root, fs, cfg, overrides=o))
    deployer = Deployer(cluster=cluster, metrics=QuietMetrics(), repo=repo, cfg=cfg,
                        services=ServiceSettings(health_check_duration=300), co_author=AUTHOR)
    imp, result = committed_exporter(store, (remote, implementer, deployer), video="deployvid09")
    assert store.get(imp.id).delivery.argocd_apps == ["cortex-system-apps", "team-apps/monitoring-apps"]
    for app in ("cortex-system-apps", "team-apps/monitoring-apps"):
        kube.sync_to(app, result.merge_commit)
    t0 = utcnow()
    assert run_deploy(store, imp.id, deployer, actor="t@h", now=t0).outcome == "waiting"
    assert run_deploy(store, imp.id, deployer, actor="t@h", now=t0 + timedelta(seconds=10)).status == "deployed"
    patched = {r["path"] for r in kube.requests if r["method"] == "PATCH"}
    assert "/apis/argoproj.io/v1alpha1/namespaces/team-apps/applications/monitoring-apps" in patched
