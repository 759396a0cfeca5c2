"""Per-expert limits shared by every worker: requests per minute and requests in flight.

A request that would exceed either raises :class:`Throttled` with how long to wait;
the task re-schedules itself with that countdown instead of blocking a worker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from cortex_school.errors import Wait

_ACQUIRE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
return 1
"""


class Throttled(Wait):
    """The expert's rate or concurrency limit is reached: come back after ``retry_after``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(retry_after, message)
        self.retry_after = retry_after


class ExpertLimiter:
    def __init__(
        self, client: redis.Redis, expert: str, *, per_minute: int, concurrency: int,
        slot_ttl_seconds: float,
    ) -> None:
        self.redis = client
        self.expert = expert
        self.per_minute = per_minute
        self.concurrency = concurrency
        # A worker killed while holding a slot frees it when the slot expires.
        self.slot_ttl = slot_ttl_seconds
        self._acquire = client.register_script(_ACQUIRE_SLOT)

    @contextmanager
    def slot(self) -> Iterator[None]:
        now = time.time()
        minute = int(now // 60)
        rate_key = f"improvements:expert_rate:{self.expert}:{minute}"
        pipe = self.redis.pipeline()
        pipe.incr(rate_key)
        pipe.expire(rate_key, 120)
        used, _ = pipe.execute()
        if used > self.per_minute:
            raise Throttled(
                f"{self.expert}: {self.per_minute} requests/minute reached",
                retry_after=60 - (now % 60) + 0.5,
            )
        slots = f"improvements:expert_slots:{self.expert}"
        member = uuid.uuid4().hex
        if not self._acquire(keys=[slots], args=[now, now + self.slot_ttl, self.concurrency, member]):
            self.redis.decr(rate_key)  # not sent, so not counted
            raise Throttled(f"{self.expert}: {self.concurrency} requests in flight", retry_after=2.0)
        try:
            yield
        finally:
            self.redis.zrem(slots, member)
