"""The one error policy: what a failure means for the stage that met it.

Every client (Redis, git, Kubernetes, Prometheus, the LLM backends) raises one of these,
or a subclass of one, so a stage never guesses from a message:

* :class:`TransientError` - another try later may succeed (connection trouble, timeouts,
  429, 5xx). ``delay`` is the server's own Retry-After, when it said one. The stage task
  base retries it with one jittered exponential backoff bounded by settings
  (``TASK_RETRY_BACKOFF``, ``TASK_RETRY_BACKOFF_MAX``, ``TASK_MAX_RETRIES``; the experts'
  own ``EXPERT_*`` values for evaluations), then gives up.
* :class:`PermanentError` - the same call will fail again (401, 403, 404 where an object
  must exist, an answer that does not validate): no retry; the improvement goes to a
  person, or is rolled back if it was already delivered.
* :class:`NeedsReview` - not a fault: the stage cannot decide and a person must
  (a planner whose plan never validated). The improvement goes to ``pending_review``
  with ``reason``.
* :class:`Wait` - not a failure at all: come back after ``delay`` (a rate limit, a lock
  or namespace lease held by another change, ArgoCD still syncing, the health window).
  Waiting is bounded by the stage's own deadline, not by the retry count.

Giving up and every retry are logged (``cortex_school.tasks``) with the improvement id,
stage, attempt and reason.
"""

from __future__ import annotations

import random
from typing import Any


class PipelineError(Exception):
    """Base of the pipeline's own error kinds."""


class TransientError(PipelineError):
    """Worth another try later; ``delay`` is the server's Retry-After (seconds), if any."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(PipelineError):
    """Another try gives the same answer: do not retry."""


class NeedsReview(PipelineError):
    """A person must decide; ``reason`` is what they are told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Wait(PipelineError):
    """Not a failure: run the stage again after ``delay`` seconds."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"waiting {delay:.1f}s")
        self.delay = delay


# How a give-up on the infrastructure starts its reason (tasks/base.py writes it, the
# alerts read it): a transient error that outlived every retry.
INFRASTRUCTURE_ERROR = "infrastructure error"

# 408 request timeout, 409 conflict (an object being changed meanwhile), 425 too early,
# 429 too many requests; every 5xx.
TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUS or status >= 500


def retry_after_seconds(headers: Any) -> float | None:
    """The Retry-After header in seconds (the delta form; a date is ignored)."""
    try:
        value = headers.get("retry-after") if headers is not None else None
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """The one backoff: exponential from ``base``, capped at ``cap``, half of it jittered
    (so a retry never comes sooner than half the nominal delay, and a crowd spreads out).
    ``attempt`` counts from 0 for the first retry."""
    delay = min(cap, base * (2 ** min(attempt, 32)))
    return delay / 2 + random.uniform(0, delay / 2)
