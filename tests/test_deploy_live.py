"""The whole loop through a real worker on the simulated cluster: committed improvements
are deployed, watched, and verified or rolled back, with tasks that re-schedule
themselves; a person can roll back a verified one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celeryconfig import ALL_QUEUES
from cortex_school.clients.cluster.simulated import KEY
from cortex_school.models import Status
from cortex_school.pipeline import enqueue
from cortex_school.store import RedisStore
from cortex_school.clients.gitops import ensure_bare_remote
from tests.factories import make_improvement
from tests.live import wait_until_idle

pytestmark = pytest.mark.live
SEED = Path(__file__).resolve().parent.parent / "examples" / "platform" / "gitops"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = _free_port()


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    return ensure_bare_remote(tmp_path_factory.mktemp("gitops") / "remote.git", "main", SEED)


@pytest.fixture(scope="module")
def worker(live_worker, tmp_path_factory, settings, remote):
    RedisStore.from_url(settings.redis.url)._redis.delete(KEY)  # the simulated cluster's state
    env = {"GITOPS_REMOTE": str(remote), "GITOPS_WORKDIR": str(tmp_path_factory.mktemp("clones")),
           "ALLOWED_NAMESPACES": "cortex-system,cortex,monitoring", "RAG_ENABLED": "false",
           "CLUSTER_TARGET": "simulated", "SIMULATED_FAULTS": "flaky-api=crashloop",
           "HEALTH_CHECK_DURATION": "3", "HEALTH_CHECK_INTERVAL": "1", "DEPLOY_POLL_INTERVAL": "0.5",
           "METRICS_PORT": str(METRICS_PORT)}
    return live_worker(queues=ALL_QUEUES, concurrency=2, env=env, name_suffix="deploy").name


def submit(store, description, notes, video):
    imp = make_improvement(description, video_id=video, category="architecture", type="tool",
                           relevance=0.97, notes=notes)
    store.create(imp, actor="test", reason="test")
    enqueue(imp)
    return imp


def test_one_is_verified_one_is_rolled_back_and_a_person_rolls_back_the_other(worker, store, remote):
    good = submit(store, "Run the steady API service",
                  "Deploy ghcr.io/cortex/steady-api:1.4.2 in cortex-system on port 8080.", "deploylive1")
    bad = submit(store, "Run the flaky API service",
                 "Deploy ghcr.io/cortex/flaky-api:0.9.0 in cortex-system on port 8081.", "deploylive2")
    statuses = wait_until_idle(store, {good.id, bad.id}, timeout=120)
    assert statuses == {good.id: "verified", bad.id: "failed"}, {
        i: store.raw_fields(i).get("review_reason") or store.raw_fields(i).get("failure_reason")
        for i in statuses}
    verified = store.raw_fields(good.id)
    assert verified["health_checks_passed"] == "true" and verified["argocd_sync_revision"]
    timeline = [e.to_status for e in store.timeline(good.id)]
    assert timeline[-4:] == ["implementing", "committed", "deployed", "verified"]
    failed = store.raw_fields(bad.id)
    assert "CrashLoopBackOff" in failed["failure_reason"]
    assert f"Reverts-Improvement: {bad.id}" in git(remote, "log", "-1", "--format=%B", failed["rollback_commit"])
    assert "apps/cortex-system/flaky-api-deployment.yaml" not in git(remote, "ls-tree", "-r", "--name-only", "main")
    log = [json.loads(x)["improvement_id"] for x in store._redis.lrange("improvements:rollback_log", 0, -1)]
    assert log == [bad.id]

    cli = Path(sys.executable).with_name("cortex-school")
    out = subprocess.run([str(cli), "rollback", good.id, "--reason", "replaced by v2", "--by", "carol"],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=60)
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 60  # verified is a resting status: wait for the change
    while store.raw_fields(good.id)["status"] != Status.FAILED.value and time.monotonic() < deadline:
        time.sleep(0.2)
    fields = store.raw_fields(good.id)
    assert fields["status"] == Status.FAILED.value
    assert fields["failure_reason"] == "manual rollback by carol: replaced by v2"
    assert "apps/cortex-system/steady-api-deployment.yaml" not in git(remote, "ls-tree", "-r", "--name-only", "main")


def scrape() -> dict[tuple[str, tuple], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_workers_metrics_endpoint_moves_with_the_pipeline(worker, store):
    from cortex_school.metrics import DESIGN_METRICS

    before = scrape()
    assert before[("cortex_school_improvements_total", (("stage", "raw"),))] == 0
    good = submit(store, "Run the metrics API service",
                  "Deploy ghcr.io/cortex/metrics-api:2.0.1 in cortex-system on port 8090.", "metricslv1")
    bad = submit(store, "Run the flaky API service again",
                 "Deploy ghcr.io/cortex/flaky-api:0.9.1 in cortex-system on port 8091.", "metricslv2")
    quiet = make_improvement("Consider eBPF tracing some day", video_id="metricslv3",
                             category="monitoring", relevance=0.4)
    store.create(quiet, actor="test", reason="test")
    enqueue(quiet)
    wait_until_idle(store, {good.id, bad.id, quiet.id}, timeout=120)
    m = scrape()
    names = {name for name, _ in m}
    for design_name in DESIGN_METRICS:
        assert any(n == design_name or n.startswith(design_name + "_") for n in names), design_name

    def value(name, **labels):
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("cortex_school_improvements_total", stage="raw") == 3
    assert value("cortex_school_improvements_total", stage="approved") == 2
    assert value("cortex_school_improvements_total", stage="pending_review") == 1
    assert value("cortex_school_improvements_total", stage="verified") == 1
    assert value("cortex_school_improvements_total", stage="failed") == 1
    assert value("cortex_school_improvements_in_stage", stage="verified") == 1
    assert value("cortex_moe_routing_total", expert="architecture") == 2
    assert value("cortex_moe_routing_total", expert="monitoring") == 1
    assert value("cortex_school_auto_approval_rate") == pytest.approx(2 / 3)
    assert value("cortex_worker_git_commits_total") == 2
    assert value("cortex_worker_implementations_total", type="architecture", outcome="committed") == 2
    assert value("cortex_rollbacks_total", reason="health_pods") == 1
    assert value("cortex_rollback_duration_seconds_count") == 1
    assert value("cortex_health_checks_total", check="pods", result="failed") >= 1
    assert value("cortex_health_checks_total", check="pods", result="passed") >= 1
    assert value("cortex_school_stage_latency_seconds_count", stage="deployed") == 2
    assert value("cortex_school_processing_rate", stage="raw") > 0
    assert ("cortex_queue_depth", (("queue", "implement.security"),)) in m


def test_flower_shows_the_worker_and_tasks_with_improvement_ids(worker, store, tmp_path):
    import httpx

    port = _free_port()
    env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"}
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cortex_school", "flower",
                               f"--port={port}", "--address=127.0.0.1", "--persistent=False"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers = {}
        while time.monotonic() < deadline:
            try:
                workers = httpx.get(f"http://127.0.0.1:{port}/api/workers", timeout=10).json()
                # Flower fills a worker's record in steps (stats first, queues on a later
                # inspect reply): wait for the part this test reads.
                if "active_queues" in workers.get(worker, {}):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        assert worker in workers, workers.keys()
        assert "implement.security" in {q["name"] for q in workers[worker]["active_queues"]}
        imp = submit(store, "Run the flower-visible API",
                     "Deploy ghcr.io/cortex/visible-api:1.0.0 in cortex-system on port 8095.", "flowerlv01")
        wait_until_idle(store, {imp.id}, timeout=120)
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).json()
            seen = [t for t in tasks.values() if imp.id in (t.get("args") or "")]
            if {t["name"] for t in seen} >= {"cortex_school.tasks.route.route",
                                             "cortex_school.tasks.implement.implement"}:
                break
            time.sleep(0.5)
        assert {t["name"] for t in seen} >= {"cortex_school.tasks.route.route",
                                             "cortex_school.tasks.implement.implement",
                                             "cortex_school.tasks.deploy.verify"}
    finally:
        flower.terminate()
        flower.wait(10)


def test_two_changes_for_one_namespace_are_serialised(worker, store, remote):
    """One change in flight per namespace: the second commits only after the first is
    verified or rolled back, so each failure maps to exactly one change."""
    first = submit(store, "Run the first queue API", "Deploy ghcr.io/cortex/queue-a:1.0.0 in "
                   "cortex-system on port 8101.", "serialise01")
    second = submit(store, "Run the second queue API", "Deploy ghcr.io/cortex/queue-b:1.0.0 in "
                    "cortex-system on port 8102.", "serialise02")
    statuses = wait_until_idle(store, {first.id, second.id}, timeout=120)
    assert set(statuses.values()) == {"verified"}

    def at(imp_id, status):
        return next(e.at for e in store.timeline(imp_id) if e.to_status == status)

    earlier, later = sorted([first.id, second.id], key=lambda i: at(i, "committed"))
    assert at(later, "committed") >= at(earlier, "verified")
    assert any("one change per namespace" in (e.reason or "") for e in store.timeline(later)) or \
        store.raw_fields(later).get("leased_namespaces") == "cortex-system"
    assert store._redis.get("improvements:namespace_lease:cortex-system") in (None, later)
