"""The validate stage: checks that look for reasons not to implement an improvement.

This issue ships the exact-duplicate check; the RAG checks (semantic duplicates,
architectural conflicts, dependencies, capacity) plug in as further
:class:`Check` implementations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cortex_school.models import Finding, Improvement, Status, ValidationReport

if TYPE_CHECKING:
    from cortex_school.platform_model import Platform

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


class PlatformCheck(Check):
    """A check that reads the platform model; without one it says it could not look."""

    def __init__(self, platform: "Callable[[], Platform | None]") -> None:
        self.platform = platform  # the current model (cached per revision by its source)

    def not_checked(self) -> list[Finding]:
        return [Finding(check=self.name, conflict=False,
                        reason="not checked: no GitOps repository to compare with")]

    @staticmethod
    def text(improvement: Improvement) -> str:
        """Description and notes; not the title: it is the video's, shared by every
        proposal from that video. Normalised (NFKC, no invisible format characters) so a
        name reads as a reviewer reads it."""
        from cortex_school.validation.normative import clean_text

        return clean_text(f"{improvement.description}\n{improvement.implementation_notes}")


def validate(improvement: Improvement, checks: Sequence[Check]) -> ValidationReport:
    findings = [finding for check in checks for finding in check.run(improvement)]
    return ValidationReport(passed=not any(f.conflict for f in findings), findings=findings)


