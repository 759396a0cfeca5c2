"""Stage functions over the real store, without Celery: each acts once, then reports skipped."""

import pytest

from cortex_school.experts import OfflineExpert
from cortex_school.experts.base import Expert, ExpertFailure
from cortex_school.models import Status
from cortex_school.stages import (
    gate_context,
    review,
    run_aggregate,
    run_approve,
    run_consult,
    run_route,
    run_validate,
)
from cortex_school.store import TransitionRefused
from cortex_school.validation import default_checks
from tests.factories import make_improvement


@pytest.fixture
def store(any_store):
    """Every stage function runs on either store (the in-memory one has the same rules)."""
    return any_store


def run_all(store, settings, imp):
    store.create(imp, actor="t", reason="t")
    outcomes = [run_route(store, imp.id, actor="t")]
    expert = OfflineExpert(store.get(imp.id).expert)
    outcomes.append(run_consult(store, imp.id, expert=expert, actor="t"))
    outcomes.append(run_aggregate(store, imp.id, experts=[expert.name], actor="t"))
    outcomes.append(run_validate(store, imp.id, checks=default_checks(store), actor="t"))
    outcomes.append(run_approve(store, imp.id, ctx=gate_context(store, settings)))
    return outcomes, expert


def test_each_stage_applies_once_and_then_skips(store, settings):
    imp = make_improvement(relevance=0.93)
    outcomes, expert = run_all(store, settings, imp)
    assert [o.outcome for o in outcomes] == ["applied"] * 5
    assert store.get(imp.id).status is Status.APPROVED
    timeline = len(store.timeline(imp.id))
    again = [
        run_route(store, imp.id, actor="t"),
        run_consult(store, imp.id, expert=expert, actor="t"),
        run_aggregate(store, imp.id, experts=[expert.name], actor="t"),
        run_validate(store, imp.id, checks=default_checks(store), actor="t"),
        run_approve(store, imp.id, ctx=gate_context(store, settings)),
    ]
    assert [o.outcome for o in again] == ["skipped"] * 5
    assert len(store.timeline(imp.id)) == timeline


def test_missing_improvement_is_reported_not_raised(store):
    assert run_route(store, "f" * 16, actor="t").outcome == "missing"


def test_evaluation_by_the_wrong_expert_is_refused(store):
    imp = make_improvement()
    store.create(imp, actor="t", reason="t")
    run_route(store, imp.id, actor="t")
    outcome = run_consult(store, imp.id, expert=OfflineExpert("security"), actor="t")
    assert outcome.outcome == "skipped" and "security is not on its panel" in outcome.detail
    assert store.get(imp.id).status is Status.CATEGORIZED


class BrokenExpert(Expert):
    backend = "broken"

    def evaluate(self, improvement):
        raise ExpertFailure("answer did not validate twice")


def test_an_expert_failure_goes_to_review_never_onward(store):
    imp = make_improvement(relevance=0.99)
    store.create(imp, actor="t", reason="t")
    run_route(store, imp.id, actor="t")
    outcome = run_consult(store, imp.id, expert=BrokenExpert("architecture", "m"), actor="t")
    stored = store.get(imp.id)
    assert stored.status is Status.PENDING_REVIEW and outcome.outcome == "applied"
    assert "expert failure (architecture): answer did not validate twice" in store.raw_fields(imp.id)["review_reason"]


def test_flags_and_circuit_breaker_are_read_from_redis(store, settings):
    store.set_flag("auto_approve_none", True)
    outcomes, _ = run_all(store, settings, make_improvement(relevance=0.99))
    assert outcomes[-1].status == "pending_review" and "auto_approve_none" in outcomes[-1].detail
    store.set_flag("auto_approve_none", False)
    for _ in range(4):
        store.log_rollback("a" * 16, "CrashLoopBackOff")
    outcomes, _ = run_all(store, settings, make_improvement("Another one", relevance=0.99))
    assert "circuit breaker open: 4 rollbacks" in outcomes[-1].detail


def test_human_review_approve_reject_and_acknowledge(store, settings):
    low = make_improvement("Low relevance idea", relevance=0.5)
    concept = make_improvement("What is a vector index", type="concept", relevance=0.99)
    other = make_improvement("Something to reject", relevance=0.5)
    for imp in (low, concept, other):
        run_all(store, settings, imp)
        assert store.get(imp.id).status is Status.PENDING_REVIEW
    assert review(store, low.id, approve=True, reviewer="ana", reason="worth it").status == "approved"
    if hasattr(store, "_redis"):  # the Redis store's priority queue
        assert store._redis.zscore("improvements:implementation", low.id) == 50.0
    assert store.get(low.id).decision.decided_by == "human:ana"
    assert review(store, concept.id, approve=True, reviewer="ana", reason="noted").status == "acknowledged"
    if hasattr(store, "_redis"):
        assert store._redis.zscore("improvements:implementation", concept.id) is None
    assert review(store, other.id, approve=False, reviewer="bo", reason="not for us").status == "rejected"
    with pytest.raises(TransitionRefused, match="not pending_review"):
        review(store, other.id, approve=True, reviewer="bo", reason="changed my mind")


def test_aggregate_waits_for_the_whole_panel_then_combines_conservatively(store):
    imp = make_improvement(
        "Add a Grafana dashboard for Postgres replication lag",
        category="monitoring", notes="ConfigMap dashboard; uses a read-only database secret token.",
    )
    store.create(imp, actor="t", reason="t")
    run_route(store, imp.id, actor="t")
    routed = store.get(imp.id)
    assert routed.expert == "database" and "monitoring" in routed.secondary_experts
    panel = [routed.expert, *routed.secondary_experts]
    run_consult(store, imp.id, expert=OfflineExpert(panel[0]), actor="t")
    waiting = run_aggregate(store, imp.id, experts=panel, actor="t")
    assert waiting.outcome == "skipped" and "waiting for" in waiting.detail
    for name in panel[1:]:
        run_consult(store, imp.id, expert=OfflineExpert(name), actor="t")
    done = run_aggregate(store, imp.id, experts=panel, actor="t")
    assert done.outcome == "applied"
    combined = store.get(imp.id).assessment
    parts = store.assessments(imp.id)
    assert combined.consulted == panel and combined.expert == "database"
    assert combined.risk == max((a.risk for a in parts.values()), key=lambda r: r.rank)
    assert len(combined.concerns) == sum(len(a.concerns) for a in parts.values())
