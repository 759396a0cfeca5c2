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
from cortex_school.celery import app
from cortex_school.cluster.simulated import KEY
from cortex_school.models import Status
from cortex_school.pipeline import enqueue
from cortex_school.store import RedisStore
from cortex_school.workers.gitops import ensure_bare_remote
from tests.factories import make_improvement
from tests.live import start_worker, stop_worker, wait_until_idle, wait_until_ready

pytestmark = pytest.mark.live
SEED = Path(__file__).resolve().parent.parent / "examples" / "platform" / "gitops"


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    return ensure_bare_remote(tmp_path_factory.mktemp("gitops") / "remote.git", "main", SEED)


@pytest.fixture(scope="module")
def worker(tmp_path_factory, settings, remote):
    app.control.purge()
    store = RedisStore.from_url(settings.redis.url)
    store.purge()
    store.redis.delete(KEY)
    env = {"GITOPS_REMOTE": str(remote), "GITOPS_WORKDIR": str(tmp_path_factory.mktemp("clones")),
           "ALLOWED_NAMESPACES": "cortex-system,cortex,monitoring", "RAG_ENABLED": "false",
           "CLUSTER_TARGET": "simulated", "SIMULATED_FAULTS": "flaky-api=crashloop",
           "HEALTH_CHECK_DURATION": "3", "HEALTH_CHECK_INTERVAL": "1", "DEPLOY_POLL_INTERVAL": "0.5"}
    name = f"pytest-deploy-{os.getpid()}@localhost"
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log_path, "wb") as log:
        proc = start_worker(queues=ALL_QUEUES, concurrency=2, name=name, log=log, env=env)
        try:
            wait_until_ready(name, proc)
            yield name
        finally:
            stop_worker(proc)
            print(log_path.read_text()[-3000:])


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
    log = [json.loads(x)["improvement_id"] for x in store.redis.lrange("improvements:rollback_log", 0, -1)]
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
