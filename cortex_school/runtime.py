"""Per-process singletons: settings, the store, expert backends, cache and limiters.

Created on first use in each worker process (after the prefork fork), never per task.
"""

from __future__ import annotations

from functools import lru_cache

from cortex_school.experts import Expert, make_expert
from cortex_school.experts.cache import EvaluationCache
from cortex_school.experts.limits import ExpertLimiter
from cortex_school.settings import get_settings
from cortex_school.store import RedisStore

# The expert task's hard time limit: a limiter slot held longer than this is stale.
EXPERT_SLOT_TTL_SECONDS = 300.0


@lru_cache(maxsize=1)
def get_store() -> RedisStore:
    return RedisStore.from_url(get_settings().redis.url)


@lru_cache(maxsize=None)
def get_expert(name: str) -> Expert:
    return make_expert(name, get_settings())


@lru_cache(maxsize=1)
def get_cache() -> EvaluationCache:
    return EvaluationCache(get_store().redis, get_settings().experts.cache_ttl_seconds)


@lru_cache(maxsize=None)
def get_limiter(name: str) -> ExpertLimiter:
    cfg = get_settings().experts
    return ExpertLimiter(
        get_store().redis, name, per_minute=cfg.rate_limit_per_minute,
        concurrency=cfg.concurrency, slot_ttl_seconds=EXPERT_SLOT_TTL_SECONDS,
    )
