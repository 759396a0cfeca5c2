"""The one error policy: clients map failures onto transient/permanent, and the stage task
base retries, waits, hands over or compensates by kind (tasks run eagerly, on real Redis)."""

from __future__ import annotations

import re

import pytest

from cortex_school.celery import app
from cortex_school.clients.cluster import ClusterRefused, ClusterUnreachable, cluster_error
from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster
from cortex_school.clients.cluster.metrics import PrometheusMetrics
from cortex_school.clients.gitops import GitOpsConflict, GitOpsError
from cortex_school.errors import (
    NeedsReview,
    PermanentError,
    TransientError,
    Wait,
    backoff_seconds,
    retry_after_seconds,
)
from cortex_school.experts.llm import ExpertUnavailable
from cortex_school.models import Status
from cortex_school.tasks.base import PipelineTask
from tests.factories import make_improvement
from tests.fake_kube import kube_client

CALLS: list[str] = []
PLAN: dict[str, list[BaseException | None]] = {}


@app.task(bind=True, base=PipelineTask, name="tests.error_policy.step")
def step(self: PipelineTask, improvement_id: str) -> dict[str, str]:
    """Raises the next planned exception for this improvement, or finishes."""
    CALLS.append(improvement_id)
    planned = PLAN.get(improvement_id) or [None]
    exc = planned.pop(0)
    if exc is not None:
        raise exc
    return {"improvement_id": improvement_id, "stage": "step", "outcome": "applied", "status": "x"}


@pytest.fixture
def policy(store, settings, monkeypatch):
    CALLS.clear()
    PLAN.clear()
    monkeypatch.setattr(settings.tasks, "max_retries", 3)
    monkeypatch.setattr(settings.tasks, "retry_backoff_seconds", 0.01)
    compensated: list[tuple[str, str]] = []
    import cortex_school.pipeline as pipeline

    monkeypatch.setattr(pipeline, "compensate", lambda iid, why: compensated.append((iid, why)))
    return compensated


def at(store, status_path):
    imp = make_improvement(f"Policy proposal {len(CALLS)} {status_path[-1].value}")
    store.create(imp, actor="t", reason="t")
    for s in status_path:
        store.transition(imp.id, s, actor="t", reason="t")
    return imp.id


def test_clients_map_their_failures_onto_the_two_kinds():
    """GIVEN HTTP answers and git errors WHEN mapped THEN 401/403/404 are permanent, 429/5xx
    and no answer transient (with the server's Retry-After), a git conflict permanent."""
    assert isinstance(cluster_error("API", 403, "Forbidden"), ClusterRefused)
    assert isinstance(cluster_error("API", 401, "Unauthorized"), PermanentError)
    throttled = cluster_error("API", 429, "Too Many Requests", {"retry-after": "7"})
    assert isinstance(throttled, ClusterUnreachable) and throttled.delay == 7.0
    assert isinstance(cluster_error("API", 503, "Unavailable"), TransientError)
    assert isinstance(cluster_error("API", None, "ConnectionRefusedError"), TransientError)
    assert isinstance(GitOpsError("push failed"), TransientError)
    conflict = GitOpsConflict("merge conflicts")
    assert isinstance(conflict, PermanentError) and isinstance(conflict, GitOpsError)
    assert isinstance(ExpertUnavailable("overloaded", 3.0), TransientError)
    assert retry_after_seconds({"retry-after": "soon"}) is None
    delays = [backoff_seconds(n, 2.0, 60.0) for n in range(10)]
    assert all(1.0 <= d <= 60.0 for d in delays) and delays[-1] >= 30.0


def test_a_403_from_the_api_server_is_permanent_and_a_502_transient(httpserver):
    """GIVEN an API server answering 403, then 502 with Retry-After WHEN the cluster client
    asks THEN it raises ClusterRefused, then ClusterUnreachable with the server's delay (so
    only the second is retried). (urllib3 itself waits out a 429/503 Retry-After.)"""
    httpserver.expect_oneshot_request(re.compile(".*")).respond_with_data("forbidden", status=403)
    httpserver.expect_oneshot_request(re.compile(".*")).respond_with_data(
        "bad gateway", status=502, headers={"Retry-After": "4"})
    cluster = KubernetesCluster(api_client=kube_client(httpserver.url_for("/")))
    with pytest.raises(ClusterRefused):
        cluster.application("some-app")
    with pytest.raises(ClusterUnreachable) as caught:
        cluster.application("some-app")
    assert caught.value.delay == 4.0


def test_a_query_prometheus_refuses_is_permanent(httpserver):
    """GIVEN Prometheus answering 400 (bad query) WHEN queried THEN a permanent error."""
    httpserver.expect_request("/api/v1/query").respond_with_json(
        {"status": "error", "error": "parse error"}, status=400)
    with pytest.raises(ClusterRefused, match="parse error"):
        PrometheusMetrics(httpserver.url_for(""), error_rate_query="x",
                          latency_query="y").query("rate(")


def test_transient_failures_are_retried_up_to_the_budget_then_go_to_a_person(store, policy):
    """GIVEN a stage that fails transiently every time WHEN run THEN it runs 1 + 3 times
    (TASK_MAX_RETRIES=3), then the improvement is in pending_review with the reason."""
    iid = at(store, [Status.CATEGORIZED])
    PLAN[iid] = [TransientError("connection refused")] * 10
    step.apply(args=(iid,))
    assert len(CALLS) == 4
    imp = store.get(iid)
    assert imp.status is Status.PENDING_REVIEW
    assert "TransientError: connection refused" in store.field(iid, "review_reason")


def test_a_transient_failure_that_clears_finishes_and_waiting_is_not_counted(store, policy):
    """GIVEN two waits, two transient failures, two waits WHEN run THEN it finishes: waits do
    not use up the retries, and failures count only while consecutive."""
    iid = at(store, [Status.CATEGORIZED])
    PLAN[iid] = [Wait(0.0, "lease held"), Wait(0.0), TransientError("timeout"),
                 TransientError("timeout"), Wait(0.0), TransientError("timeout"),
                 TransientError("timeout"), None]
    result = step.apply(args=(iid,)).get()
    assert result["outcome"] == "applied" and len(CALLS) == 8
    assert store.get(iid).status is Status.CATEGORIZED


def test_needs_review_and_permanent_errors_are_not_retried(store, policy):
    """GIVEN NeedsReview, then a PermanentError WHEN run THEN each runs once and the
    improvement goes to a person with the reason."""
    first = at(store, [Status.CATEGORIZED])
    PLAN[first] = [NeedsReview("planner failed: no valid plan")]
    assert step.apply(args=(first,)).get()["outcome"] == "applied"
    assert store.field(first, "review_reason") == "planner failed: no valid plan"
    second = at(store, [Status.CATEGORIZED])
    PLAN[second] = [PermanentError("401 Unauthorized")]
    step.apply(args=(second,))
    assert CALLS == [first, second]
    assert store.get(second).status is Status.PENDING_REVIEW
    assert "PermanentError: 401 Unauthorized" in store.field(second, "review_reason")


def test_a_delivered_change_that_fails_is_compensated_not_handed_over(store, policy):
    """GIVEN an improvement in committed WHEN its stage fails for good THEN the rollback is
    started (compensate), the status stays for the rollback to move."""
    iid = at(store, [Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
                     Status.IMPLEMENTING, Status.COMMITTED])
    PLAN[iid] = [PermanentError("403 Forbidden")]
    step.apply(args=(iid,))
    assert policy == [(iid, "tests.error_policy.step failed: PermanentError: 403 Forbidden")]
    assert store.get(iid).status is Status.COMMITTED
