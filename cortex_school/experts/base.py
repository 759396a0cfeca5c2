"""The contract every expert backend fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod

from cortex_school.errors import PermanentError
from cortex_school.models import Assessment, Improvement


class ExpertFailure(PermanentError):
    """The expert could not produce a valid assessment; the improvement goes to a person."""


class Expert(ABC):
    """Evaluates one improvement from one specialist's point of view.

    Lifecycle rules:
    * ``evaluate`` is a pure question: it reads the improvement, returns a validated
      :class:`Assessment` and changes no state (the calling task stores it).
    * The assessment is advice. An expert can raise risk or block; it can never change
      the improvement's category or approve it: only the approval gate approves.
    * Failure to answer raises :class:`ExpertFailure` (permanent) or a transient error
      the task retries; it never returns a made-up assessment.
    """

    #: Recorded in every assessment as ``backend``.
    backend: str
    #: True when evaluating calls a service (rate-limited, cached, retried).
    remote: bool = False

    def __init__(self, name: str, model: str) -> None:
        self.name = name
        self.model = model

    @abstractmethod
    def evaluate(self, improvement: Improvement) -> Assessment: ...
