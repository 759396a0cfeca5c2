from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.runtime import get_expert, get_store
from cortex_school.settings import EXPERTS
from cortex_school.stages import StageOutcome, run_evaluate
from cortex_school.tasks.base import InvalidTaskInput, PipelineTask


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.evaluate.evaluate")
def evaluate(self: PipelineTask, improvement_id: str, expert: str | None = None) -> dict[str, Any]:
    """Ask the improvement's expert for an assessment (categorized → assessed).

    Routed to ``expert.<expert>``; without ``expert`` the routed expert is used.
    """
    checked = self.checked_id(improvement_id)
    store = get_store()
    name = expert or store.redis.hget(f"improvement:{checked}", "expert")
    if name is None:
        return StageOutcome(
            improvement_id=checked, stage="evaluate", outcome="skipped",
            status=store.redis.hget(f"improvement:{checked}", "status"),
            detail="not routed yet",
        ).model_dump()
    if name not in EXPERTS:
        raise InvalidTaskInput(f"unknown expert {name!r}")
    outcome = run_evaluate(store, checked, expert=get_expert(name), actor=self.actor())
    return outcome.model_dump()
