"""The periodic stuck-improvement sweep (Celery beat: ``celery -A cortex_school beat``)."""

from __future__ import annotations

from typing import Any

from celery import Task
from cortex_school.celery import app
from cortex_school.delivery import rollback_under_way
from cortex_school.models import Improvement
from cortex_school.pipeline import give_up, resume
from cortex_school.runtime import get_settings, get_store
from cortex_school.sweeper import SWEEPER, find_stuck, sweep


def _resume(improvement: Improvement) -> None:
    resume(improvement, rolling_back=rollback_under_way(improvement))


def _give_up(improvement: Improvement, reason: str) -> None:
    give_up(get_store(), improvement, reason, actor=SWEEPER)


@app.task(bind=True, base=Task, name="cortex_school.tasks.sweep.sweep_stuck")
def sweep_stuck(self: Task) -> dict[str, Any]:
    settings = get_settings()
    store = get_store()
    stuck = find_stuck(store, stuck_after=settings.stuck_after_seconds,
                       health_window=settings.services.health_check_duration)
    done = sweep(store, stuck, resume=_resume, give_up=_give_up)
    return {"stuck": len(stuck), "done": done}
