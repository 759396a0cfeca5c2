from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.runtime import get_store
from cortex_school.stages import run_validate
from cortex_school.tasks.base import PipelineTask
from cortex_school.validation import default_checks


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.validate.validate")
def validate(self: PipelineTask, improvement_id: str) -> dict[str, Any]:
    """Run the validation checks (assessed → validated, findings recorded)."""
    store = get_store()
    outcome = run_validate(
        store, self.checked_id(improvement_id), checks=default_checks(store), actor=self.actor()
    )
    return outcome.model_dump()
