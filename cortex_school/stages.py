"""What each pipeline stage does, as plain functions over the store.

Each function loads the improvement, checks that it is at the stage's input
status, calls the domain logic, and applies one atomic transition. Run twice, the
second call finds the improvement past its stage and reports ``skipped`` with the
reason, changing nothing; that is what makes a manual ``celery call`` safe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from cortex_school.approval import GATE_ACTOR, GateContext, decide, priority
from cortex_school.experts.base import Expert, ExpertFailure
from cortex_school.experts.cache import EvaluationCache, cache_key
from cortex_school.experts.limits import ExpertLimiter
from cortex_school.experts.offline import guard
from cortex_school.experts.panel import combine
from cortex_school.models import (
    Assessment,
    Decision,
    Improvement,
    ImprovementType,
    Status,
    utcnow,
)
from cortex_school.outcome import StageOutcome, apply_transition, at_status
from cortex_school.router import route
from cortex_school.settings import Settings
from cortex_school.store import TransitionRefused
from cortex_school.store.protocol import StateStore
from cortex_school.validation import Check, validate


def run_route(store: StateStore, improvement_id: str, *, actor: str) -> StageOutcome:
    loaded = at_status(store, improvement_id, "route", Status.RAW)
    if isinstance(loaded, StageOutcome):
        return loaded
    routing = route(loaded.category, loaded.description, loaded.implementation_notes)
    store.count(f"routed:{routing.expert}")
    return apply_transition(
        store, loaded, "route", Status.CATEGORIZED, actor=actor,
        reason=f"routed to {routing.expert} expert: {routing.reason}",
        fields={
            "expert": routing.expert,
            "secondary_experts": _json_list(routing.secondary_experts),
            "routing_reason": routing.reason,
            "categorized_at": utcnow().isoformat(),
        },
    )


def run_consult(
    store: StateStore,
    improvement_id: str,
    *,
    expert: Expert,
    actor: str,
    cache: EvaluationCache | None = None,
    limiter: ExpertLimiter | None = None,
) -> StageOutcome:
    """Ask one expert (primary or secondary) and keep its assessment; no status change.

    A remote expert's answer is served from the evaluation cache when the same text
    was evaluated by the same expert, model and prompt; otherwise the call happens
    inside the expert's rate and concurrency limits. ``Throttled`` and
    ``ExpertUnavailable`` propagate so the task can re-schedule itself.
    """
    loaded = at_status(store, improvement_id, "evaluate", Status.CATEGORIZED)
    if isinstance(loaded, StageOutcome):
        return loaded
    consulted = [loaded.expert, *loaded.secondary_experts]
    if expert.name not in consulted:
        return StageOutcome(
            improvement_id=loaded.id, stage="evaluate", outcome="skipped",
            status=loaded.status.value,
            detail=f"routed to the {loaded.expert} expert; {expert.name} is not on its panel",
        )
    if expert.name in store.assessments(loaded.id):
        return StageOutcome(
            improvement_id=loaded.id, stage="evaluate", outcome="skipped",
            status=loaded.status.value, detail=f"nothing to do: {expert.name} already answered",
        )
    key = cache_key(loaded, expert.name, expert.model) if expert.remote and cache else None
    hit = cache.get(key) if cache and key else None
    if hit is not None:
        # A cached answer is replayed, but the rules still read this improvement's text
        # (title included): they may raise its risk or block it, never lower either.
        assessment = guard(
            loaded, hit.model_copy(update={"cached": True, "evaluated_at": utcnow()}),
            expert=expert.name,
        )
        store.count("expert_cache_hits")
        store.count(f"expert_cache_hits:{expert.name}")
    else:
        try:
            if limiter is not None and expert.remote:
                with limiter.slot():
                    assessment = expert.evaluate(loaded)
            else:
                assessment = expert.evaluate(loaded)
        except ExpertFailure as exc:
            store.count(f"expert_failures:{expert.name}")
            return record_expert_failure(store, loaded.id, expert.name, str(exc), actor=actor)
        if cache and key:
            cache.put(key, assessment)
        _account(store, assessment)
    note = (
        f"{expert.name} expert ({assessment.backend}/{assessment.model}): "
        f"{assessment.verdict.value}, risk {assessment.risk.value}"
        + (" (evaluation cache hit)" if assessment.cached else "")
    )
    saved = store.save_assessment(loaded.id, assessment, actor=actor, note=note)
    return StageOutcome(
        improvement_id=loaded.id, stage="evaluate", outcome="applied" if saved else "skipped",
        status=loaded.status.value, detail=note if saved else f"{expert.name} already answered",
    )


LLM_LATENCY_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


def _account(store: StateStore, assessment: Assessment) -> None:
    """Calls, tokens and latency per expert and model (exported by the metrics issue)."""
    if assessment.usage is None:
        return
    store.count(f"backend:{assessment.backend}:requests", assessment.usage.requests)
    store.observe(f"llm_latency:{assessment.backend}", assessment.usage.latency_ms / 1000,
                  LLM_LATENCY_BUCKETS)
    prefix = f"expert:{assessment.expert}:{assessment.model}"
    store.count(f"{prefix}:calls")
    store.count(f"{prefix}:requests", assessment.usage.requests)
    store.count(f"{prefix}:input_tokens", assessment.usage.input_tokens)
    store.count(f"{prefix}:output_tokens", assessment.usage.output_tokens)
    store.count(f"{prefix}:latency_ms", float(assessment.usage.latency_ms))


def run_aggregate(
    store: StateStore, improvement_id: str, *, experts: Sequence[str], actor: str
) -> StageOutcome:
    """Combine the panel's answers into one assessment (categorized → assessed).

    The panel is the routed expert plus ``experts``; it waits until every one of them
    has answered. The combination then covers every assessment stored for the
    improvement, the panel's and any other consulted expert's, never fewer: naming a
    smaller panel cannot drop an expert's block or risk.
    """
    loaded = at_status(store, improvement_id, "aggregate", Status.CATEGORIZED)
    if isinstance(loaded, StageOutcome):
        return loaded
    answers = store.assessments(loaded.id)
    panel = list(dict.fromkeys([*([loaded.expert] if loaded.expert else []), *experts]))
    missing = [e for e in panel if e not in answers]
    if missing:
        return StageOutcome(
            improvement_id=loaded.id, stage="aggregate", outcome="skipped",
            status=loaded.status.value, detail=f"waiting for: {', '.join(missing)}",
        )
    if not panel:
        return StageOutcome(
            improvement_id=loaded.id, stage="aggregate", outcome="skipped",
            status=loaded.status.value, detail="no expert to aggregate",
        )
    names = panel + sorted(e for e in answers if e not in panel)
    combined = combine([answers[e] for e in names], primary=loaded.expert or names[0])
    panel_text = f"panel of {len(names)} ({', '.join(names)}): " if len(names) > 1 else ""
    return apply_transition(
        store, loaded, "aggregate", Status.ASSESSED, actor=actor,
        reason=(
            f"{panel_text}{combined.expert} expert ({combined.backend}/{combined.model}): "
            f"{combined.verdict.value}, risk {combined.risk.value}"
        ),
        fields={
            "assessment": combined.model_dump_json(),
            "expert_verdict": combined.verdict.value,
            "risk": combined.risk.value,
            "assessed_at": utcnow().isoformat(),
        },
    )


def record_expert_failure(
    store: StateStore, improvement_id: str, expert_name: str, error: str, *, actor: str
) -> StageOutcome:
    """An expert that cannot answer sends the improvement to a person, never onward."""
    reason = f"expert failure ({expert_name}): {error[:500]}"
    result = store.transition(
        improvement_id, Status.PENDING_REVIEW, actor=actor, reason=reason,
        fields={"review_reason": reason, "last_error": error[:2000]},
    )
    return StageOutcome(
        improvement_id=improvement_id, stage="evaluate",
        outcome="applied" if result.applied else "skipped",
        status=Status.PENDING_REVIEW.value if result.applied else result.previous,
        detail=reason if result.applied else f"transition to pending_review {result.outcome}",
    )


def run_validate(
    store: StateStore, improvement_id: str, *, checks: Sequence[Check], actor: str
) -> StageOutcome:
    loaded = at_status(store, improvement_id, "validate", Status.ASSESSED)
    if isinstance(loaded, StageOutcome):
        return loaded
    report = validate(loaded, checks)
    conflicts = [f.reason for f in report.conflicts]
    store.count(f"rag_validations:{'pass' if report.passed else 'conflict'}")
    for kind in {f.check for f in report.conflicts}:
        store.count(f"rag_conflicts:{kind}")
    return apply_transition(
        store, loaded, "validate", Status.VALIDATED, actor=actor,
        reason="no conflicts" if report.passed else "; ".join(conflicts),
        fields={
            "validation": report.model_dump_json(),
            "rag_check_passed": "true" if report.passed else "false",
            "conflicts_found": _json_list(conflicts),
            "validated_at": report.validated_at.isoformat(),
        },
    )


def gate_context(store: StateStore, settings: Settings) -> GateContext:
    approval = settings.approval
    return GateContext(
        auto_approve_threshold=approval.auto_approve_threshold,
        high_risk_threshold=approval.high_risk_threshold,
        flags=store.flags(),
        recent_rollbacks=store.rollbacks_since(
            timedelta(seconds=approval.circuit_breaker_window_seconds)
        ),
        rollback_limit=approval.circuit_breaker_rollbacks,
    )


def run_approve(
    store: StateStore, improvement_id: str, *, ctx: GateContext, actor: str = GATE_ACTOR
) -> StageOutcome:
    loaded = at_status(store, improvement_id, "approve", Status.VALIDATED)
    if isinstance(loaded, StageOutcome):
        return loaded
    decision = decide(loaded, ctx, assessments=store.assessments(loaded.id))
    store.count(f"gate:{'approved' if decision.approved else 'review'}")
    return _apply_decision(store, loaded, decision, actor=actor)


def _apply_decision(
    store: StateStore, improvement: Improvement, decision: Decision, *, actor: str
) -> StageOutcome:
    fields = {"decision": decision.model_dump_json()}
    if decision.approved:
        fields.update(
            approved_at=decision.decided_at.isoformat(),
            auto_approved="true" if decision.decided_by == GATE_ACTOR else "false",
            approved_by=decision.decided_by,
            priority=str(priority(improvement)),
        )
        return apply_transition(
            store, improvement, "approve", Status.APPROVED, actor=actor, reason=decision.reason,
            fields=fields, score=priority(improvement),
        )
    fields["review_reason"] = decision.reason
    return apply_transition(
        store, improvement, "approve", Status.PENDING_REVIEW, actor=actor,
        reason=decision.reason, fields=fields,
    )


def review(
    store: StateStore, improvement_id: str, *, approve: bool, reviewer: str, reason: str
) -> StageOutcome:
    """A person's decision on an improvement waiting in ``pending_review``.

    Approving a knowledge-only item acknowledges it; it is never implemented.
    Raises :class:`TransitionRefused` when the improvement is not waiting for review.
    """
    improvement = store.get(improvement_id)
    if improvement is None:
        raise TransitionRefused(f"no improvement {improvement_id}")
    if improvement.status is not Status.PENDING_REVIEW:
        raise TransitionRefused(
            f"{improvement_id} is {improvement.status.value}, not pending_review"
        )
    actor = f"human:{reviewer}"
    decision = Decision(approved=approve, reasons=[reason], decided_by=actor)
    if approve and improvement.type is ImprovementType.CONCEPT:
        return apply_transition(
            store, improvement, "review", Status.ACKNOWLEDGED, actor=actor,
            reason=f"knowledge acknowledged: {reason}",
            fields={"decision": decision.model_dump_json(), "reviewed_by": actor},
        )
    if approve:
        return _apply_decision(store, improvement, decision, actor=actor)
    return apply_transition(
        store, improvement, "review", Status.REJECTED, actor=actor, reason=reason,
        fields={"decision": decision.model_dump_json(), "reviewed_by": actor,
                "rejection_reason": reason},
    )


def _json_list(values: list[str]) -> str:
    return json.dumps(values, ensure_ascii=False)
