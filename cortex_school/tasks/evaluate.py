"""Expert evaluation: one task per consulted expert on that expert's queue, then an
aggregate task (the chord's callback) that combines their answers."""

from __future__ import annotations

import random
from typing import Any

from cortex_school.celery import app
from cortex_school.errors import Wait, backoff_seconds
from cortex_school.experts.limits import Throttled
from cortex_school.experts.llm import ExpertUnavailable
from cortex_school.router import panel
from cortex_school.runtime import get_cache, get_expert, get_limiter, get_store
from cortex_school.settings import EXPERTS, get_settings
from cortex_school.stages import StageOutcome, record_expert_failure, run_aggregate, run_consult
from cortex_school.tasks.base import InvalidTaskInput, PipelineTask


class EvaluateTask(PipelineTask):
    """An expert call: the experts' own retry budget and backoff (EXPERT_MAX_RETRIES,
    EXPERT_RETRY_BACKOFF, EXPERT_RETRY_BACKOFF_MAX); out of retries, the expert is declared
    unreachable and the improvement goes to a person."""

    def retry_budget(self) -> int:
        return get_settings().experts.max_transient_retries

    def backoff(self, attempt: int) -> float:
        cfg = get_settings().experts
        return backoff_seconds(attempt, cfg.retry_backoff_seconds, cfg.retry_backoff_max_seconds)

    def give_up(self, improvement_id: str, exc: BaseException, attempts: int) -> Any:
        if not isinstance(exc, ExpertUnavailable):
            return super().give_up(improvement_id, exc, attempts)
        store = get_store()
        name = (self.request.kwargs or {}).get("expert") or store.field(improvement_id, "expert") or "?"
        store.count(f"expert_unreachable:{name}")
        return record_expert_failure(
            store, improvement_id, str(name), f"unreachable after {attempts} attempts: {exc}",
            actor=self.actor(),
        ).model_dump()


@app.task(bind=True, base=EvaluateTask, name="cortex_school.tasks.evaluate.evaluate")
def evaluate(self: EvaluateTask, improvement_id: str, expert: str | None = None) -> dict[str, Any]:
    """Ask one expert for an assessment; routed to ``expert.<expert>``.

    Without ``expert`` the routed (primary) expert answers. Rate limits re-schedule
    the task; 429/5xx/timeouts retry with backoff up to EXPERT_MAX_RETRIES, then the
    expert is declared unreachable and the improvement goes to human review.
    """
    checked = self.checked_id(improvement_id)
    store = get_store()
    name = expert or store.field(checked, "expert")
    if name is None:
        return StageOutcome(
            improvement_id=checked, stage="evaluate", outcome="skipped",
            status=store.field(checked, "status"), detail="not routed yet",
        ).model_dump()
    if name not in EXPERTS:
        raise InvalidTaskInput(f"unknown expert {name!r}")
    try:
        outcome = run_consult(
            store, checked, expert=get_expert(name), actor=self.actor(),
            cache=get_cache(), limiter=get_limiter(name),
        )
    except Throttled as exc:  # spread a crowd of throttled tasks over a second
        raise Wait(exc.retry_after + random.uniform(0, 1), str(exc)) from None
    return outcome.model_dump()


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.evaluate.aggregate")
def aggregate(
    self: PipelineTask, improvement_id: str, experts: list[str] | None = None
) -> dict[str, Any]:
    """Combine the panel's assessments (categorized → assessed).

    The panel is always the routed expert plus its secondaries (when fan-out is on);
    ``experts`` can only add to it, never drop one, and the stage combines every
    assessment stored for the improvement in any case.
    """
    checked = self.checked_id(improvement_id)
    if experts is not None and (
        not isinstance(experts, list) or any(not isinstance(e, str) or e not in EXPERTS for e in experts)
    ):
        raise InvalidTaskInput(f"unknown experts {experts!r}")
    store = get_store()
    improvement = store.get(checked)
    if improvement is None:
        return run_aggregate(store, checked, experts=[], actor=self.actor()).model_dump()
    if improvement.expert is None:
        return StageOutcome(improvement_id=checked, stage="aggregate", outcome="skipped",
                            status=improvement.status.value, detail="not routed yet").model_dump()
    routed = panel(improvement.expert, improvement.secondary_experts,
                   fan_out=get_settings().experts.fan_out)
    full = list(dict.fromkeys([*routed, *(experts or [])]))
    if any(e not in EXPERTS for e in full):
        raise InvalidTaskInput(f"unknown experts {full!r}")
    return run_aggregate(store, checked, experts=full, actor=self.actor()).model_dump()
