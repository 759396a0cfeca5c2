"""The periodic stuck-improvement sweep (Celery beat: ``celery -A cortex_school beat``)."""

from __future__ import annotations

from typing import Any

from celery import Task

from cortex_school.celery import app
from cortex_school.models import Improvement, Status
from cortex_school.runtime import get_settings, get_store
from cortex_school.sweeper import SWEEPER, find_stuck, sweep


def resume(improvement: Improvement) -> None:
    """Re-enqueue the stage that moves ``improvement`` on from where it sits."""
    from cortex_school.pipeline import enqueue, implement_signature

    from cortex_school.deployment import rollback_under_way

    status = improvement.status
    rolling_back = rollback_under_way(get_store().raw_fields(improvement.id))
    if status in (Status.COMMITTED, Status.DEPLOYED, Status.VERIFIED) and rolling_back:
        app.send_task("cortex_school.tasks.deploy.rollback", args=(improvement.id,),
                      kwargs={"reason": rolling_back})
    elif status in (Status.APPROVED, Status.IMPLEMENTING):
        implement_signature(improvement).apply_async()
    elif status is Status.COMMITTED:
        app.send_task("cortex_school.tasks.deploy.deploy", args=(improvement.id,))
    elif status is Status.DEPLOYED:
        app.send_task("cortex_school.tasks.deploy.verify", args=(improvement.id,))
    else:
        enqueue(improvement)


def give_up(improvement: Improvement, reason: str) -> None:
    store = get_store()
    if improvement.status in (Status.COMMITTED, Status.DEPLOYED):
        # Something is in the cluster: take it back out rather than leave it unwatched.
        app.send_task("cortex_school.tasks.deploy.rollback", args=(improvement.id,),
                      kwargs={"reason": reason})
        return
    store.transition(improvement.id, Status.PENDING_REVIEW, actor=SWEEPER, reason=reason,
                     fields={"review_reason": reason})


@app.task(bind=True, base=Task, name="cortex_school.tasks.sweep.sweep_stuck")
def sweep_stuck(self: Task) -> dict[str, Any]:
    settings = get_settings()
    store = get_store()
    stuck = find_stuck(store, stuck_after=settings.stuck_after_seconds,
                       health_window=settings.services.health_check_duration)
    done = sweep(store, stuck, resume=resume, give_up=give_up)
    return {"stuck": len(stuck), "done": done}
