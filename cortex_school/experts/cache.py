"""Reuse an expert's evaluation of the same text (the design's "cache similar evaluations").

Keyed by a hash of the normalised proposal text, category and type, the expert, the
model and the prompt version, so a new model or prompt never reuses an old answer.
"""

from __future__ import annotations

import hashlib

import redis

from cortex_school.experts.prompts import PROMPT_VERSION
from cortex_school.models import Assessment, Improvement, normalize_text

CACHE_PREFIX = "improvements:expert_cache:"


def cache_key(improvement: Improvement, expert: str, model: str) -> str:
    material = "\x1f".join([
        normalize_text(improvement.description),
        normalize_text(improvement.implementation_notes),
        improvement.category,
        improvement.type.value,
        expert,
        model,
        PROMPT_VERSION,
    ])
    return CACHE_PREFIX + hashlib.sha256(material.encode()).hexdigest()


class EvaluationCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.redis = client
        self.ttl = ttl_seconds

    def get(self, key: str) -> Assessment | None:
        if self.ttl <= 0:
            return None
        raw = self.redis.get(key)
        return Assessment.model_validate_json(raw) if raw else None

    def put(self, key: str, assessment: Assessment) -> None:
        if self.ttl > 0:
            self.redis.set(key, assessment.model_dump_json(), ex=self.ttl)
