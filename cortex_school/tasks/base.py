"""The base class every stage task uses: the one error policy, and failure recording.

What a stage raises decides what happens (see :mod:`cortex_school.errors`):

* :class:`~cortex_school.errors.Wait` - run again after its delay; not counted.
* :class:`~cortex_school.errors.TransientError` (and Redis connection trouble) - retried
  with one jittered exponential backoff (``TASK_RETRY_BACKOFF`` doubling up to
  ``TASK_RETRY_BACKOFF_MAX``; a server's Retry-After wins), at most ``max_retries()``
  times; then :meth:`PipelineTask.give_up`.
* :class:`~cortex_school.errors.NeedsReview` - the improvement goes to a person with the
  reason.
* anything else (:class:`~cortex_school.errors.PermanentError` and bugs) - not retried;
  :meth:`PipelineTask.on_failure` records it: the improvement goes to a person, or, if it
  was already delivered, is rolled back (``pipeline.compensate``).

Transient failures are counted per task message in the store (a retry keeps the task
id), so waiting never uses up the retries. Every retry and every give-up is logged on
``cortex_school.tasks`` with the improvement id, stage, attempt and reason.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import Retry
from celery.utils.log import get_task_logger

from celery import Task
from cortex_school import pipeline
from cortex_school.errors import (
    INFRASTRUCTURE_ERROR,
    NeedsReview,
    PermanentError,
    TransientError,
    Wait,
    backoff_seconds,
)
from cortex_school.models import Rejection, Status
from cortex_school.runtime import get_settings, get_store
from cortex_school.store import CONNECTION_ERRORS, ensure_valid_id
from cortex_school.store.leases import release

logger = get_task_logger("cortex_school.tasks")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    *CONNECTION_ERRORS,
    ConnectionError,
    TimeoutError,
)

# Waiting (a lock, a lease, ArgoCD, the health window) is bounded by each stage's own
# deadline, transient failures by max_retries(). Celery reads max_retries=None as "the
# default", which would silently stop a wait after three rounds.
UNBOUNDED = 1_000_000


def infrastructure_reason(stage: str, improvement_id: str, exc: BaseException, attempts: int) -> str:
    """What a person reads when a stage gave up on the infrastructure (the message is the
    client's own, already redacted)."""
    reason = (f"{INFRASTRUCTURE_ERROR} in {stage}, gave up after {attempts} attempts: "
              f"{type(exc).__name__}: {str(exc).strip()[:500]}; fix the remote, credentials or "
              "endpoint named here")
    if stage == "implement":
        reason += f", then `cortex-school review approve {improvement_id}` implements it again"
    return reason


class InvalidTaskInput(PermanentError, ValueError):
    """The task was called with an argument it must not act on (e.g. a hostile id)."""


class PipelineTask(Task):
    max_retries = UNBOUNDED

    @property
    def stage(self) -> str:
        return str(self.name).rsplit(".", 1)[-1]

    def actor(self) -> str:
        return f"{self.stage}@{self.request.hostname or 'local'}"

    def retry_budget(self) -> int:
        """Transient failures retried before :meth:`give_up`."""
        return get_settings().tasks.max_retries

    def backoff(self, attempt: int) -> float:
        cfg = get_settings().tasks
        return backoff_seconds(attempt, cfg.retry_backoff_seconds, cfg.retry_backoff_max_seconds)

    def give_up(self, improvement_id: str, exc: BaseException, attempts: int) -> Any:
        """Out of retries on an infrastructure error (a GitOps remote that is gone or refuses
        the credentials, an API that does not answer): the improvement goes to a person
        (``pending_review``) with what failed, how often, and what to do, and an alert is
        recorded, instead of the failure living only in the worker's log. Once something
        was delivered the failure stands instead (``on_failure`` rolls it back). A stage
        may record something better and return its outcome instead."""
        store = get_store()
        status = store.field(improvement_id, "status")
        if status is None or status in {s.value for s in pipeline.DELIVERY}:
            raise exc
        reason = infrastructure_reason(self.stage, improvement_id, exc, attempts)
        store.set_fields(improvement_id, {"last_error": reason, "infrastructure_error": reason})
        store.alert(improvement_id, reason, "warning")
        return self._hand_over(improvement_id, reason)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task_id = getattr(self.request, "id", None)
        if task_id is None:  # called directly, not from a message
            return super().__call__(*args, **kwargs)
        store = get_store()
        # Starts of this message (per retry) that never finish because its worker dies
        # every time are dead-lettered after TASK_MAX_DELIVERIES instead of looping.
        starts = store.count_delivery(task_id, self.request.retries)
        if starts > get_settings().max_deliveries:
            return self._dead_letter(args, starts - 1)
        improvement_id = str(args[0])[:64] if args else ""
        try:
            try:
                result = super().__call__(*args, **kwargs)
            finally:
                try:
                    store.clear_delivery(task_id, self.request.retries)
                except CONNECTION_ERRORS:
                    pass  # expires on its own; the failure below is what matters
        except Retry:
            raise
        except Wait as exc:
            store.clear_attempts(task_id)  # failures count while consecutive
            logger.info("wait improvement=%s stage=%s delay=%.1fs reason=%s",
                        improvement_id, self.stage, exc.delay, exc)
            raise self.retry(countdown=max(0.0, exc.delay), max_retries=UNBOUNDED) from None
        except NeedsReview as exc:
            return self._hand_over(improvement_id, exc.reason)
        except PermanentError:
            raise
        except TRANSIENT_ERRORS as exc:
            return self._transient(store, task_id, improvement_id, exc)
        store.clear_attempts(task_id)
        if isinstance(result, dict):
            logger.info("done improvement=%s stage=%s outcome=%s status=%s", improvement_id,
                        self.stage, result.get("outcome"), result.get("status"))
        return result

    def _transient(self, store: Any, task_id: str, improvement_id: str, exc: BaseException) -> Any:
        store_down = isinstance(exc, CONNECTION_ERRORS)
        try:
            attempt = store.count_attempt(task_id)
        except CONNECTION_ERRORS:  # the store itself is down: Celery's own count
            store_down, attempt = True, self.request.retries + 1
        budget = self.retry_budget()
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if attempt > budget:
            logger.error("give up improvement=%s stage=%s attempt=%d/%d reason=%s",
                         improvement_id, self.stage, attempt, budget, reason)
            if not store_down:
                store.clear_attempts(task_id)
            return self.give_up(improvement_id, exc, attempt)
        delay = getattr(exc, "delay", None)
        countdown = delay if delay is not None else self.backoff(attempt - 1)
        logger.warning("retry improvement=%s stage=%s attempt=%d/%d delay=%.1fs reason=%s",
                       improvement_id, self.stage, attempt, budget, countdown, reason)
        raise self.retry(countdown=countdown, max_retries=UNBOUNDED, exc=exc)

    def _hand_over(self, improvement_id: str, reason: str) -> dict[str, Any]:
        logger.warning("needs review improvement=%s stage=%s reason=%s",
                       improvement_id, self.stage, reason[:300])
        store = get_store()
        moved = store.transition(improvement_id, Status.PENDING_REVIEW, actor=self.actor(),
                                 reason=reason[:2000], fields={"review_reason": reason[:2000]})
        if moved.applied:
            release(store, improvement_id)
        return {"improvement_id": improvement_id, "stage": self.stage,
                "outcome": "applied" if moved.applied else "skipped",
                "status": Status.PENDING_REVIEW.value if moved.applied else moved.previous,
                "detail": reason[:2000]}

    def _dead_letter(self, args: Any, deliveries: int) -> dict[str, Any]:
        store = get_store()
        improvement_id = str(args[0]) if args else ""
        reason = (f"dead-lettered: {self.name} was delivered {deliveries} times and its worker "
                  "died every time; not run again")
        logger.error("dead letter improvement=%.64s stage=%s deliveries=%d",
                     improvement_id, self.stage, deliveries)
        store.dead_letter(task=self.name, task_id=self.request.id,
                          args=[str(a)[:100] for a in args], deliveries=deliveries)
        if store.exists(improvement_id):
            store.set_fields(improvement_id, {"dead_lettered": reason})
            store.transition(improvement_id, Status.PENDING_REVIEW, actor=self.actor(),
                             reason=reason, fields={"review_reason": reason})
        return {"improvement_id": improvement_id, "stage": self.stage,
                "outcome": "dead_lettered", "detail": reason}

    def checked_id(self, improvement_id: Any) -> str:
        try:
            return ensure_valid_id(improvement_id)
        except ValueError as exc:
            get_store().record_rejection(
                Rejection(source=f"task:{self.name}", location="args[0]", reason=str(exc))
            )
            raise InvalidTaskInput(str(exc)) from exc

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, InvalidTaskInput) or not args:
            logger.warning("refused task=%s reason=%s", self.name, str(exc)[:300])
            return
        improvement_id = str(args[0])
        reason = f"{self.name} failed: {type(exc).__name__}: {str(exc)[:500]}"
        logger.error("failed improvement=%s stage=%s reason=%s", improvement_id, self.stage,
                     reason, exc_info=not isinstance(exc, PipelineErrorTypes))
        store = get_store()
        if not store.exists(improvement_id):
            return
        store.set_fields(improvement_id, {"last_error": reason})
        if store.field(improvement_id, "status") in {s.value for s in pipeline.DELIVERY}:
            # Something is (or may be) in the cluster: a person cannot take it over from
            # here, so take it back out; if the rollback itself is what failed, say so loudly.
            if self.stage == "rollback":
                store.alert(improvement_id, f"rollback failed: {reason}", "critical")
                store.transition(improvement_id, Status.FAILED, actor=self.actor(), reason=reason,
                                 fields={"failure_reason": reason,
                                         "rollback_status": f"failed: {reason}"[:500]})
            else:
                pipeline.compensate(improvement_id, reason)
            return
        result = store.transition(
            improvement_id, Status.PENDING_REVIEW, actor=self.actor(), reason=reason,
            fields={"review_reason": reason},
        )
        if result.applied:
            release(store, improvement_id)


PipelineErrorTypes = (TransientError, PermanentError)
