"""Implementation: one task per approved improvement on its worker's queue
(``implement.<worker>``), then the deploy stage is queued."""

from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.experts.base import ExpertFailure
from cortex_school.experts.llm import ExpertUnavailable
from cortex_school.models import Status, utcnow
from cortex_school.runtime import get_implementer, get_settings, get_store
from cortex_school.stages import StageOutcome
from cortex_school.tasks.base import UNBOUNDED, InvalidTaskInput, PipelineTask
from cortex_school.tasks.evaluate import backoff_seconds
from cortex_school.workers import WORKERS, worker_for
from cortex_school.workers.gitops import GitOpsError
from cortex_school.workers.implement import run_implement

DEPLOY_TASK = "cortex_school.tasks.deploy.deploy"
REINDEX_TASK = "cortex_school.tasks.index.reindex_gitops"
# Git transport failures (network, a remote that is down) are retried this often.
GIT_RETRIES = 4
LOCK_SECONDS = 300  # the task's hard time limit
LEASE_WAIT_SECONDS = 5.0


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.implement.implement")
def implement(self: PipelineTask, improvement_id: str, worker: str | None = None,
              failures: int = 0) -> dict[str, Any]:
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
    lock_key = f"improvement:{checked}:implementing"
    token = self.request.id or "direct"
    if not (store.redis.set(lock_key, token, nx=True, ex=LOCK_SECONDS)
            or store.redis.get(lock_key) == token):
        raise self.retry(countdown=10, max_retries=UNBOUNDED,
                         kwargs={"worker": assigned, "failures": failures})
    try:
        return _implement(self, store, checked, improvement, assigned, failures)
    finally:
        _release_if_ours(store, lock_key, token)


_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _release_if_ours(store: Any, key: str, token: str) -> None:
    store.redis.eval(_RELEASE, 1, key, token)


def _implement(self: PipelineTask, store: Any, checked: str, improvement: Any, assigned: str,
               failures: int) -> dict[str, Any]:
    try:
        outcome, result = run_implement(
            store, checked, implementer=get_implementer(improvement.expert or "architecture"),
            worker=assigned, actor=self.actor())
    except (GitOpsError, ExpertUnavailable) as exc:
        if isinstance(exc, GitOpsError) and "push" in str(exc):
            store.count("git_push_failures")
        if failures >= GIT_RETRIES:
            raise  # on_failure sends it to a person with the (redacted) reason
        raise self.retry(countdown=backoff_seconds(failures, 5.0, 120.0), max_retries=UNBOUNDED,
                         kwargs={"worker": assigned, "failures": failures + 1}, exc=exc)
    except ExpertFailure as exc:
        # The expert's plan never validated: a person plans it; never committed on a guess.
        reason = f"planner failed: {exc}"[:2000]
        moved = store.transition(checked, Status.PENDING_REVIEW, actor=self.actor(),
                                 reason=reason, fields={"review_reason": reason})
        return StageOutcome(improvement_id=checked, stage="implement",
                            outcome="applied" if moved.applied else "skipped",
                            status=Status.PENDING_REVIEW.value, detail=reason).model_dump()
    if outcome.outcome == "waiting":  # another change holds the namespace
        raise self.retry(countdown=LEASE_WAIT_SECONDS, max_retries=UNBOUNDED,
                         kwargs={"worker": assigned, "failures": 0})
    queue_deploy_once(store, checked)
    return outcome.model_dump()


def queue_deploy_once(store: Any, improvement_id: str) -> bool:
    """Queue the deploy stage for a merged commit exactly once, also when an earlier run
    died between the committed transition and queueing it."""
    key = f"improvement:{improvement_id}"
    fields = store.redis.hmget(key, "status", "merge_pending", "git_commit")
    if fields[0] != Status.COMMITTED.value or fields[1] != "false":
        return False
    if not store.redis.hsetnx(key, "deploy_queued_at", utcnow().isoformat()):
        return False
    app.send_task(DEPLOY_TASK, args=(improvement_id,))
    if get_settings().rag.enabled:  # later proposals are compared with what is now there
        app.send_task(REINDEX_TASK, args=(fields[2],))
    return True
