"""One change in flight per namespace: a lease from commit until verified or failed.

With ONE_CHANGE_PER_NAMESPACE (the default), an improvement takes the lease of every
namespace it writes to before committing; another improvement for one of those
namespaces waits (its task re-schedules itself) until the holder is verified, failed
or sent to review. So a failing health check always maps to exactly one change.
A lease whose holder already rests is stale and is taken over, so a lost release
never blocks a namespace for good.
"""

from __future__ import annotations

from cortex_school.models import Status
from cortex_school.store import RedisStore, improvement_key

LEASE_PREFIX = "improvements:namespace_lease:"
# Statuses that no longer need the namespace to themselves.
RELEASED = frozenset({Status.VERIFIED, Status.FAILED, Status.PENDING_REVIEW, Status.REJECTED,
                      Status.ACKNOWLEDGED})

_ACQUIRE = """
-- KEYS: lease keys. ARGV: improvement id. Returns the first other holder, or '' when taken.
for _, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur and cur ~= ARGV[1] then return cur end
end
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1]) end
return ''
"""
_RELEASE_IF = """
-- KEYS: lease keys. ARGV: holder. Deletes only leases that holder still has.
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k); n = n + 1 end
end
return n
"""


def lease_key(namespace: str) -> str:
    return f"{LEASE_PREFIX}{namespace}"


def acquire(store: RedisStore, improvement_id: str, namespaces: list[str]) -> str | None:
    """Take every namespace's lease, or none; returns the holder that blocks, if any."""
    keys = [lease_key(ns) for ns in sorted(set(namespaces))]
    acquire_script = store.redis.register_script(_ACQUIRE)
    release_script = store.redis.register_script(_RELEASE_IF)
    for _ in range(3):
        holder = acquire_script(keys=keys, args=[improvement_id])
        if not holder:
            store.redis.hset(improvement_key(improvement_id), "leased_namespaces",
                             ",".join(sorted(set(namespaces))))
            return None
        status = store.redis.hget(improvement_key(holder), "status")
        if status is not None and Status(status) not in RELEASED:
            return holder
        release_script(keys=keys, args=[holder])  # stale: its holder is done or gone
    return holder


def release(store: RedisStore, improvement_id: str) -> int:
    leased = store.redis.hget(improvement_key(improvement_id), "leased_namespaces") or ""
    keys = [lease_key(ns) for ns in leased.split(",") if ns]
    if not keys:
        return 0
    return int(store.redis.register_script(_RELEASE_IF)(keys=keys, args=[improvement_id]))


def holders(store: RedisStore) -> dict[str, str]:
    return {k[len(LEASE_PREFIX):]: store.redis.get(k) or ""
            for k in store.redis.scan_iter(match=f"{LEASE_PREFIX}*")}
