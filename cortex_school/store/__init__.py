"""The state store: the one place that talks to Redis for the pipeline's state.

:class:`~cortex_school.store.protocol.StateStore` is the interface stages are written
against; :class:`~cortex_school.store.redis_store.RedisStore` its implementation (keys,
Lua scripts), :class:`~cortex_school.store.memory.MemoryStore` an in-memory one for unit
tests of domain functions.
"""

from cortex_school.store.redis_store import *  # noqa: F403
from cortex_school.store.redis_store import (
    CONNECTION_ERRORS,
    FLAGS_KEY,
    LEASE_PREFIX,
    OVERRIDE_FLAGS,
    RedisStore,
    TransitionRefused,
    TransitionResult,
    connect,
    ensure_valid_id,
    improvement_key,
    status_key,
    timeline_key,
)

__all__ = ["CONNECTION_ERRORS", "FLAGS_KEY", "LEASE_PREFIX", "connect", "OVERRIDE_FLAGS", "RedisStore", "TransitionRefused",
           "TransitionResult", "ensure_valid_id", "improvement_key", "status_key", "timeline_key"]
