"""What a stage did, and the few moves every stage makes: load the improvement, check it
is at the stage's input status, apply one transition (or report why nothing changed)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from cortex_school.models import Improvement, Status
from cortex_school.store.protocol import StateStore


class StageOutcome(BaseModel):
    """What a stage did; the JSON a task returns (and Flower shows)."""

    improvement_id: str
    stage: str
    outcome: Literal["applied", "skipped", "missing", "waiting"]
    status: str | None
    detail: str


def load(store: StateStore, improvement_id: str, stage: str) -> Improvement | StageOutcome:
    improvement = store.get(improvement_id)
    if improvement is None:
        return StageOutcome(
            improvement_id=improvement_id, stage=stage, outcome="missing", status=None,
            detail="no such improvement",
        )
    return improvement


def at_status(store: StateStore, improvement_id: str, stage: str, expected: Status) -> Improvement | StageOutcome:
    """The improvement if it is at ``expected``; otherwise the outcome that says why not."""
    loaded = load(store, improvement_id, stage)
    if isinstance(loaded, StageOutcome) or loaded.status is expected:
        return loaded
    return skip(loaded, stage, expected)


def skip(improvement: Improvement, stage: str, expected: Status) -> StageOutcome:
    return StageOutcome(
        improvement_id=improvement.id, stage=stage, outcome="skipped",
        status=improvement.status.value,
        detail=f"nothing to do: status is {improvement.status.value}, this stage acts on {expected.value}",
    )


def apply_transition(
    store: StateStore,
    improvement: Improvement,
    stage: str,
    target: Status,
    *,
    actor: str,
    reason: str,
    fields: dict[str, str],
    score: float = 0.0,
) -> StageOutcome:
    result = store.transition(
        improvement.id, target, actor=actor, reason=reason, fields=fields, priority=score
    )
    if result.applied:
        return StageOutcome(
            improvement_id=improvement.id, stage=stage, outcome="applied", status=target.value,
            detail=reason,
        )
    # Another worker got there first (or the id vanished): report, change nothing.
    return StageOutcome(
        improvement_id=improvement.id, stage=stage, outcome="skipped",
        status=result.previous, detail=f"transition to {target.value} {result.outcome}",
    )
