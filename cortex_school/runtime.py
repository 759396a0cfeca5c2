"""Per-process singletons: settings, the store, expert backends.

Created on first use in each worker process (after the prefork fork), never per task.
"""

from __future__ import annotations

from functools import lru_cache

from cortex_school.experts import Expert, make_expert
from cortex_school.settings import get_settings
from cortex_school.store import RedisStore


@lru_cache(maxsize=1)
def get_store() -> RedisStore:
    return RedisStore.from_url(get_settings().redis.url)


@lru_cache(maxsize=None)
def get_expert(name: str) -> Expert:
    return make_expert(name, get_settings())
