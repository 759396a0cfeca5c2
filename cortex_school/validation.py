"""The validate stage: checks that look for reasons not to implement an improvement.

This issue ships the exact-duplicate check; the RAG checks (semantic duplicates,
architectural conflicts, dependencies, capacity) plug in as further
:class:`Check` implementations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from cortex_school.models import Finding, Improvement, Status, ValidationReport
from cortex_school.store import RedisStore

# A duplicate of one of these is "already implemented or approved".
SETTLED_FOR_IMPLEMENTATION: frozenset[Status] = frozenset(
    {Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED, Status.VERIFIED}
)
# Statuses that no longer compete for implementation.
OUT_OF_THE_RUNNING: frozenset[Status] = frozenset(
    {Status.REJECTED, Status.FAILED, Status.ACKNOWLEDGED}
)


class Check(ABC):
    """One validation check.

    Lifecycle rules: ``run`` reads whatever it needs (store, indexes) and returns
    findings; it never changes state. A check that cannot decide raises; it does
    not return a pass.
    """

    name: str

    @abstractmethod
    def run(self, improvement: Improvement) -> list[Finding]: ...


class ExactDuplicateCheck(Check):
    """Same normalised description as another improvement that is approved or further,
    or that is still in flight and was ingested first (so exactly one of a set of
    duplicates proceeds, whatever order the workers take them in)."""

    name = "duplicate"

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def run(self, improvement: Improvement) -> list[Finding]:
        others = [
            o
            for o in self.store.many(self.store.ids_with_fingerprint(improvement.fingerprint))
            if o.id != improvement.id and o.status not in OUT_OF_THE_RUNNING
        ]
        ahead = sorted(
            (
                o
                for o in others
                if o.status in SETTLED_FOR_IMPLEMENTATION
                or (o.created_at, o.id) < (improvement.created_at, improvement.id)
            ),
            key=lambda o: (o.created_at, o.id),
        )
        if not ahead:
            return [Finding(check=self.name, conflict=False, reason="no identical proposal")]
        first = ahead[0]
        state = "already approved or implemented" if first.status in SETTLED_FOR_IMPLEMENTATION else "already in the pipeline"
        return [
            Finding(
                check=self.name,
                conflict=True,
                reason=f"duplicate: identical to {first.id} from video {first.video_id} ({state}, status {first.status.value})",
                related_id=first.id,
            )
        ]


def validate(improvement: Improvement, checks: Sequence[Check]) -> ValidationReport:
    findings = [finding for check in checks for finding in check.run(improvement)]
    return ValidationReport(passed=not any(f.conflict for f in findings), findings=findings)


def default_checks(store: RedisStore) -> list[Check]:
    return [ExactDuplicateCheck(store)]
