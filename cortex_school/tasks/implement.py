"""Implementation: one task per approved improvement on its worker's queue
(``implement.<worker>``), then the deploy stage is queued."""

from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.clients.gitops import GitOpsError
from cortex_school.errors import NeedsReview, Wait
from cortex_school.experts.base import ExpertFailure
from cortex_school.pipeline import after_commit
from cortex_school.runtime import get_implementer, get_settings, get_store
from cortex_school.stages import StageOutcome
from cortex_school.tasks.base import InvalidTaskInput, PipelineTask
from cortex_school.workers import WORKERS, worker_for
from cortex_school.workers.implement import run_implement

LEASE_WAIT_SECONDS = 5.0
MAX_LEASE_WAIT_SECONDS = 30.0
LOCK_WAIT_SECONDS = 10.0


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.implement.implement")
def implement(self: PipelineTask, improvement_id: str, worker: str | None = None) -> dict[str, Any]:
    """Plan, render, check and commit an approved improvement (approved → committed, or
    pending_review with every reason), then queue its deployment."""
    checked = self.checked_id(improvement_id)
    store = get_store()
    improvement = store.get(checked)
    if improvement is None:
        return StageOutcome(improvement_id=checked, stage="implement", outcome="missing",
                            status=None, detail="no such improvement").model_dump()
    assigned = worker or worker_for(improvement)
    if assigned not in WORKERS:
        raise InvalidTaskInput(f"unknown worker {assigned!r}")
    # One run per improvement at a time (a re-queue or `celery call` while one is running
    # waits its turn). The lock holds the message's task id: a redelivery of the same
    # message after its worker died takes it over at once; otherwise it expires with the
    # task's hard time limit.
    token = self.request.id or "direct"
    if not store.acquire_lock(checked, "implementing", token, ttl=get_settings().tasks.hard_limit("implement")):
        raise Wait(LOCK_WAIT_SECONDS, "another run of this improvement holds its lock")
    try:
        try:
            outcome, _ = run_implement(
                store, checked, implementer=get_implementer(improvement.expert or "architecture"),
                worker=assigned, actor=self.actor())
        except GitOpsError as exc:
            if "push" in str(exc):
                store.count("git_push_failures")
            raise
        except ExpertFailure as exc:
            # The expert's plan never validated: a person plans it; never committed on a guess.
            raise NeedsReview(f"planner failed: {exc}"[:2000]) from exc
        if outcome.outcome == "waiting":
            # Backing off: a change in flight takes minutes (deploy, the health window).
            retries = int(getattr(self.request, "retries", 0) or 0)
            raise Wait(min(MAX_LEASE_WAIT_SECONDS, LEASE_WAIT_SECONDS * 2 ** min(retries, 6)), outcome.detail)
    finally:
        store.release_lock(checked, "implementing", token)
    after_commit(store, checked)
    return outcome.model_dump()
