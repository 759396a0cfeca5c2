from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.runtime import get_checks, get_rag, get_settings, get_store
from cortex_school.stages import run_validate
from cortex_school.tasks.base import PipelineTask


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.validate.validate")
def validate(self: PipelineTask, improvement_id: str) -> dict[str, Any]:
    """Run the validation checks (assessed → validated, findings recorded), then add the
    improvement to the history corpus so later proposals are compared with it."""
    store = get_store()
    checked = self.checked_id(improvement_id)
    outcome = run_validate(store, checked, checks=get_checks(), actor=self.actor())
    if outcome.outcome == "applied" and get_settings().rag.enabled:
        improvement = store.get(checked)
        if improvement is not None:
            get_rag().remember(improvement)
    return outcome.model_dump()
