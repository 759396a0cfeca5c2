"""Evaluation cache keys and the per-expert limits, on the real Redis."""

import time

import pytest

from cortex_school.experts.cache import EvaluationCache, cache_key
from cortex_school.experts.limits import ExpertLimiter, Throttled
from cortex_school.experts.offline import OfflineExpert
from cortex_school.errors import backoff_seconds
from tests.factories import make_improvement


def test_cache_key_changes_with_text_expert_model_but_not_video_or_spacing():
    a = make_improvement("Add a PDB for Qdrant", video_id="v1")
    b = make_improvement("  add a pdb for QDRANT ", video_id="v2")
    c = make_improvement("Add a PDB for Redis", video_id="v1")
    assert cache_key(a, "architecture", "m1") == cache_key(b, "architecture", "m1")
    assert len({cache_key(a, "architecture", "m1"), cache_key(c, "architecture", "m1"),
                cache_key(a, "security", "m1"), cache_key(a, "architecture", "m2")}) == 4


def test_cache_round_trip_and_ttl(store):
    imp = make_improvement()
    key = cache_key(imp, "architecture", "m")
    cache = EvaluationCache(store._redis, ttl_seconds=60)
    assert cache.get(key) is None
    assessment = OfflineExpert("architecture").evaluate(imp)
    cache.put(key, assessment)
    assert cache.get(key) == assessment
    assert 0 < store._redis.ttl(key) <= 60
    assert EvaluationCache(store._redis, ttl_seconds=0).get(key) is None  # disabled


def test_concurrency_limit_is_shared_and_released(store):
    a = ExpertLimiter(store._redis, "security", per_minute=100, concurrency=2, slot_ttl_seconds=30)
    b = ExpertLimiter(store._redis, "security", per_minute=100, concurrency=2, slot_ttl_seconds=30)
    with a.slot(), b.slot():
        with pytest.raises(Throttled, match="2 requests in flight"):
            with a.slot():
                pass
    with a.slot():
        pass


def test_a_dead_workers_slot_expires(store):
    limiter = ExpertLimiter(store._redis, "database", per_minute=100, concurrency=1, slot_ttl_seconds=0.2)
    store._redis.zadd("improvements:expert_slots:database", {"dead-worker": time.time() + 0.2})
    with pytest.raises(Throttled):
        with limiter.slot():
            pass
    time.sleep(0.3)
    with limiter.slot():
        pass


def test_rate_limit_per_minute(store):
    limiter = ExpertLimiter(store._redis, "monitoring", per_minute=3, concurrency=10, slot_ttl_seconds=30)
    for _ in range(3):
        with limiter.slot():
            pass
    with pytest.raises(Throttled) as info:
        with limiter.slot():
            pass
    assert 0 < info.value.retry_after <= 61


def test_backoff_grows_with_jitter_and_is_capped():
    first = [backoff_seconds(0, 2.0, 300) for _ in range(50)]
    later = [backoff_seconds(5, 2.0, 300) for _ in range(50)]
    assert all(1.0 <= d <= 2.0 for d in first) and len(set(first)) > 1
    assert all(32.0 <= d <= 64.0 for d in later)
    assert all(d <= 300 for d in (backoff_seconds(20, 2.0, 300) for _ in range(20)))
