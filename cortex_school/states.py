"""The state machine: which status may follow which, and which stage keys each status lives in.

A transition is applied atomically by :meth:`cortex_school.store.RedisStore.transition`;
this module is the single table it consults.
"""

from __future__ import annotations

from cortex_school.models import Status

S = Status

ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    # Any stage that fails for good sends the improvement to a person (pending_review).
    S.RAW: frozenset({S.CATEGORIZED, S.PENDING_REVIEW}),
    S.CATEGORIZED: frozenset({S.ASSESSED, S.PENDING_REVIEW}),
    S.ASSESSED: frozenset({S.VALIDATED, S.PENDING_REVIEW}),
    S.VALIDATED: frozenset({S.APPROVED, S.PENDING_REVIEW}),
    S.PENDING_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.ACKNOWLEDGED}),
    # A person may still withdraw an approval before implementation starts.
    S.APPROVED: frozenset({S.IMPLEMENTING, S.REJECTED, S.PENDING_REVIEW}),
    S.IMPLEMENTING: frozenset({S.COMMITTED, S.PENDING_REVIEW, S.FAILED}),
    # Branch mode: a branch deleted without being merged is a person's "no" (rejected).
    S.COMMITTED: frozenset({S.DEPLOYED, S.FAILED, S.REJECTED}),
    S.DEPLOYED: frozenset({S.VERIFIED, S.FAILED}),
    S.VERIFIED: frozenset({S.FAILED}),  # a manual rollback of a verified change
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.ACKNOWLEDGED: frozenset(),
}

# Statuses where nothing is queued: the pipeline is idle for that improvement.
RESTING: frozenset[Status] = frozenset(
    {S.PENDING_REVIEW, S.REJECTED, S.ACKNOWLEDGED, S.VERIFIED, S.FAILED}
)
# Where the pipeline rests when no deploy worker runs (a branch-only commit also waits
# in committed for a person to merge it).
RESTING_BEFORE_DEPLOY: frozenset[Status] = RESTING | {S.COMMITTED}
# Where the pipeline rests when no implementation worker runs (approved waits in
# improvements:implementation).
RESTING_BEFORE_IMPLEMENTATION: frozenset[Status] = RESTING_BEFORE_DEPLOY | {S.APPROVED}

# Sorted sets (the design's stage keys) an improvement is in while it has a status.
# "{expert}" is filled with the improvement's routed expert.
STAGE_KEYS: dict[Status, tuple[str, ...]] = {
    S.RAW: ("improvements:raw",),
    S.CATEGORIZED: ("improvements:category:{expert}",),
    S.ASSESSED: ("improvements:category:{expert}",),
    S.PENDING_REVIEW: ("improvements:pending_review",),
    # Score of improvements:implementation is the priority; the rest are timestamps.
    S.APPROVED: ("improvements:approved", "improvements:implementation"),
    # Still in the implementation queue while a worker has it (assigned_worker says who).
    S.IMPLEMENTING: ("improvements:implementation",),
    S.COMMITTED: ("improvements:committed",),
    S.DEPLOYED: ("improvements:deployed",),
    S.VERIFIED: ("improvements:verified",),
    S.FAILED: ("improvements:failed",),
}
PRIORITY_KEYS: frozenset[str] = frozenset({"improvements:implementation"})


def sources_for(target: Status) -> frozenset[Status]:
    """Every status from which ``target`` may be entered."""
    return frozenset(s for s, nexts in ALLOWED_TRANSITIONS.items() if target in nexts)


def is_allowed(current: Status, target: Status) -> bool:
    return target in ALLOWED_TRANSITIONS[current]
