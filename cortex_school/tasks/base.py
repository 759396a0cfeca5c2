"""The base class every pipeline task uses: retry policy and failure recording.

Two kinds of error: transient ones (Redis connection trouble) are retried with
exponential backoff and jitter; anything else is permanent for this message and is
recorded on the improvement, which goes to a person (``pending_review``) with the
reason, so a failing stage never leaves an improvement silently stuck.
"""

from __future__ import annotations

from typing import Any

import json

import redis
from celery import Task

from cortex_school.models import Rejection, Status, utcnow
from cortex_school.runtime import get_settings, get_store
from cortex_school.store import ensure_valid_id

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)


DEAD_LETTER_KEY = "improvements:dead_letter"
# For retries that wait (throttling, a held lock or lease, ArgoCD, the health window): our own
# bounds apply (failure counters, timeouts). Celery reads max_retries=None as "the default",
# which would silently stop a wait after six rounds.
UNBOUNDED = 1_000_000


class InvalidTaskInput(ValueError):
    """The task was called with an argument it must not act on (e.g. a hostile id)."""


class PipelineTask(Task):  # type: ignore[misc]
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True
    max_retries = 6

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Count starts of this message (per retry); one that never finishes because its
        worker dies every time is dead-lettered after TASK_MAX_DELIVERIES instead of looping."""
        task_id = getattr(self.request, "id", None)
        if task_id is None:  # called directly, not from a message
            return super().__call__(*args, **kwargs)
        redis_client = get_store().redis
        key = f"improvements:deliveries:{task_id}:{self.request.retries}"
        starts = redis_client.incr(key)
        redis_client.expire(key, 86400)
        cap = get_settings().max_deliveries
        if starts > cap:
            return self._dead_letter(args, starts - 1)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            redis_client.delete(key)

    def _dead_letter(self, args: Any, deliveries: int) -> dict[str, Any]:
        store = get_store()
        improvement_id = str(args[0]) if args else ""
        reason = (f"dead-lettered: {self.name} was delivered {deliveries} times and its worker "
                  "died every time; not run again")
        store.redis.lpush(DEAD_LETTER_KEY, json.dumps({
            "task": self.name, "task_id": self.request.id, "args": [str(a)[:100] for a in args],
            "deliveries": deliveries, "at": utcnow().isoformat()}))
        store.count("dead_lettered")
        if store.exists(improvement_id):
            store.redis.hset(f"improvement:{improvement_id}", "dead_lettered", reason)
            store.transition(improvement_id, Status.PENDING_REVIEW, actor=self.actor(),
                             reason=reason, fields={"review_reason": reason})
        return {"improvement_id": improvement_id, "stage": self.name.rsplit(".", 1)[-1],
                "outcome": "dead_lettered", "detail": reason}

    def actor(self) -> str:
        stage = self.name.rsplit(".", 1)[-1]
        return f"{stage}@{self.request.hostname or 'local'}"

    def checked_id(self, improvement_id: Any) -> str:
        try:
            return ensure_valid_id(improvement_id)
        except ValueError as exc:
            get_store().record_rejection(
                Rejection(source=f"task:{self.name}", location="args[0]", reason=str(exc))
            )
            raise InvalidTaskInput(str(exc)) from None

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, InvalidTaskInput) or not args:
            return
        improvement_id = str(args[0])
        reason = f"{self.name} failed: {type(exc).__name__}: {str(exc)[:500]}"
        store = get_store()
        if not store.exists(improvement_id):
            return
        store.redis.hset(f"improvement:{improvement_id}", "last_error", reason)
        from cortex_school.leases import release

        status = store.redis.hget(f"improvement:{improvement_id}", "status")
        if status in (Status.COMMITTED.value, Status.DEPLOYED.value, Status.VERIFIED.value):
            # Something is (or may be) in the cluster: a person cannot take it over from
            # here, so take it back out; if the rollback itself is what failed, say so loudly.
            if self.name.endswith(".rollback"):
                store.redis.lpush("improvements:alerts", json.dumps({
                    "improvement_id": improvement_id, "level": "critical",
                    "text": f"rollback failed: {reason}", "at": utcnow().isoformat()}))
                store.transition(improvement_id, Status.FAILED, actor=self.actor(), reason=reason,
                                 fields={"failure_reason": reason, "rollback_status": f"failed: {reason}"[:500]})
            else:
                from cortex_school.celery import app as celery_app

                celery_app.send_task("cortex_school.tasks.deploy.rollback", args=(improvement_id,),
                                     kwargs={"reason": reason})
            return
        result = store.transition(
            improvement_id, Status.PENDING_REVIEW, actor=self.actor(), reason=reason,
            fields={"review_reason": reason},
        )
        if result.applied:
            release(store, improvement_id)
