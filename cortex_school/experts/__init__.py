"""Expert backends. :func:`make_expert` picks one from settings."""

from __future__ import annotations

from cortex_school.experts.base import Expert, ExpertFailure
from cortex_school.experts.offline import OfflineExpert
from cortex_school.settings import EXPERTS, Settings


def make_expert(name: str, settings: Settings) -> Expert:
    """The configured backend for expert ``name``.

    With no LLM configured this is the deterministic offline expert, which names
    itself as such in every assessment it writes.
    """
    if name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}")
    return OfflineExpert(name)


__all__ = ["Expert", "ExpertFailure", "OfflineExpert", "make_expert"]
