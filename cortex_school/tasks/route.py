from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.runtime import get_store
from cortex_school.stages import run_route
from cortex_school.tasks.base import PipelineTask


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.route.route")
def route(self: PipelineTask, improvement_id: str) -> dict[str, Any]:
    """Route one raw improvement to its expert (raw → categorized)."""
    outcome = run_route(get_store(), self.checked_id(improvement_id), actor=self.actor())
    return outcome.model_dump()
