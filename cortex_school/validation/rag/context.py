"""The embedder, the vector index, and each improvement's vector, computed once and
reused by every RAG check."""

from __future__ import annotations

import numpy as np

from cortex_school.models import Improvement
from cortex_school.validation.rag.chunking import improvement_chunk, improvement_text
from cortex_school.validation.rag.embedding import Embedder
from cortex_school.validation.rag.index import VectorIndex


class RagContext:
    """The index, the embedder, and each improvement's vector, computed once."""

    def __init__(self, index: VectorIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def vector(self, improvement: Improvement) -> np.ndarray:
        if improvement.id not in self._vectors:
            if len(self._vectors) > 256:
                self._vectors.clear()
            self._vectors[improvement.id] = self.embedder.encode([improvement_text(improvement)])[0]
        return self._vectors[improvement.id]

    def remember(self, improvement: Improvement) -> None:
        """Add the improvement to the history corpus so later proposals find it."""
        self.index.add("improvements", improvement_chunk(improvement), self.vector(improvement))
