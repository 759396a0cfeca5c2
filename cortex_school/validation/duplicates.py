"""Duplicates: the same proposal again (exact, by normalised text), or a similar one
(semantic, by embedding) that is approved or further, in flight, or failed before."""

from __future__ import annotations

from cortex_school.models import Finding, Improvement, Status
from cortex_school.store.protocol import StateStore
from cortex_school.validation.base import (
    OUT_OF_THE_RUNNING,
    SETTLED_FOR_IMPLEMENTATION,
    Check,
)
from cortex_school.validation.rag.context import RagContext


class ExactDuplicateCheck(Check):
    """Same normalised description as another improvement that is approved or further,
    or that is still in flight and was ingested first (so exactly one of a set of
    duplicates proceeds, whatever order the workers take them in)."""

    name = "duplicate"

    def __init__(self, store: StateStore) -> None:
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


# -- semantic duplicates ----------------------------------------------------------------------


class SemanticDuplicateCheck(Check):
    """A similar improvement (cosine ≥ threshold) that is approved or further, still in
    flight and ingested earlier, or that failed before."""

    name = "duplicate"

    def __init__(self, ctx: RagContext, store: StateStore, threshold: float) -> None:
        self.ctx, self.store, self.threshold = ctx, store, threshold

    def run(self, improvement: Improvement) -> list[Finding]:
        hits = [h for h in self.ctx.index.search("improvements", self.ctx.vector(improvement), 10)
                if h.score >= self.threshold and h.payload.get("improvement_id") != improvement.id]
        others = {o.id: o for o in self.store.many(h.payload["improvement_id"] for h in hits)}
        for hit in hits:
            other = others.get(hit.payload["improvement_id"])
            if other is None or other.fingerprint == improvement.fingerprint:
                continue  # gone, or an exact duplicate (the exact check reports those)
            similar = f"{other.id} ({other.description[:80]!r}, cosine {hit.score:.2f})"
            if other.status is Status.FAILED:
                reason = self.store.raw_fields(other.id).get("failure_reason", "no reason recorded")
                return [Finding(check=self.name, conflict=True, related_id=other.id,
                                reason=f"a similar improvement failed before: {similar}: {reason}")]
            if other.status in OUT_OF_THE_RUNNING:
                continue
            if other.status in SETTLED_FOR_IMPLEMENTATION:
                return [Finding(check=self.name, conflict=True, related_id=other.id,
                                reason=f"already implemented: similar to {similar}, status {other.status.value}")]
            if (other.created_at, other.id) < (improvement.created_at, improvement.id):
                return [Finding(check=self.name, conflict=True, related_id=other.id,
                                reason=f"already in the pipeline: similar to {similar}, status {other.status.value}")]
        return [Finding(check=self.name, conflict=False,
                        reason=f"no similar improvement at cosine ≥ {self.threshold:.2f}")]
