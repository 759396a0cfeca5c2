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
from cortex_school.store.protocol import StateStore
from cortex_school.store.redis_store import LEASE_PREFIX

# Statuses that no longer need the namespace to themselves.
RELEASED = frozenset({Status.VERIFIED, Status.FAILED, Status.PENDING_REVIEW, Status.REJECTED,
                      Status.ACKNOWLEDGED})


def lease_key(namespace: str) -> str:
    return f"{LEASE_PREFIX}{namespace}"


def acquire(store: StateStore, improvement_id: str, namespaces: list[str]) -> str | None:
    """Take every namespace's lease, or none; returns the holder that blocks, if any."""
    names = sorted(set(namespaces))
    holder = None
    for _ in range(3):
        holder = store.take_leases(improvement_id, names)
        if holder is None:
            store.set_fields(improvement_id, {"leased_namespaces": ",".join(names)})
            return None
        status = store.field(holder, "status")
        if status is not None and Status(status) not in RELEASED:
            return holder
        store.drop_leases(holder, names)  # stale: its holder is done or gone
    return holder


def release(store: StateStore, improvement_id: str) -> int:
    leased = store.field(improvement_id, "leased_namespaces") or ""
    return store.drop_leases(improvement_id, [ns for ns in leased.split(",") if ns])


def holders(store: StateStore) -> dict[str, str]:
    return store.lease_holders()
