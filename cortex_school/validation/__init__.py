"""Validation: the checks that look for reasons not to implement an improvement.

One module per check: :mod:`.duplicates` (exact and semantic), :mod:`.conflicts`
(architectural), :mod:`.dependencies`, :mod:`.capacity`; :mod:`.base` has the
:class:`Check` contract and :func:`validate`; :mod:`.rag` the embedding, chunking and
vector index they share; :mod:`.indexing` builds the corpora.
"""

from __future__ import annotations

from cortex_school.store.protocol import StateStore
from cortex_school.validation.base import (
    OUT_OF_THE_RUNNING,
    SETTLED_FOR_IMPLEMENTATION,
    Check,
    validate,
)
from cortex_school.validation.capacity import *  # noqa: F403
from cortex_school.validation.conflicts import *  # noqa: F403
from cortex_school.validation.dependencies import *  # noqa: F403
from cortex_school.validation.duplicates import *  # noqa: F403
from cortex_school.validation.duplicates import ExactDuplicateCheck
from cortex_school.validation.rag.context import RagContext


def default_checks(store: StateStore) -> list[Check]:
    return [ExactDuplicateCheck(store)]


__all__ = [
    "OUT_OF_THE_RUNNING", "SETTLED_FOR_IMPLEMENTATION", "Check", "validate", "default_checks",
    "ExactDuplicateCheck", "RagContext",
]
