from __future__ import annotations

from typing import Any

from cortex_school.approval import GATE_ACTOR
from cortex_school.celery import app
from cortex_school.runtime import get_store
from cortex_school.settings import get_settings
from cortex_school.stages import gate_context, run_approve
from cortex_school.tasks.base import PipelineTask


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.approve.approve")
def approve(self: PipelineTask, improvement_id: str) -> dict[str, Any]:
    """Apply the approval gate (validated → approved or pending_review)."""
    store = get_store()
    checked = self.checked_id(improvement_id)
    outcome = run_approve(
        store, checked, ctx=gate_context(store, get_settings()),
        actor=f"{GATE_ACTOR}@{self.request.hostname or 'local'}",
    )
    return outcome.model_dump()
