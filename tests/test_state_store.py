"""The state store's interface: the Redis store and the in-memory one keep the same rules
(the in-memory one is what unit tests of domain functions run on)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cortex_school.models import Status, TimelineEntry, utcnow
from cortex_school.store import RedisStore
from cortex_school.store.memory import MemoryStore
from cortex_school.store.protocol import StateStore
from tests.factories import make_improvement


def test_both_stores_implement_every_verb_of_the_interface():
    """GIVEN the StateStore protocol WHEN compared with each store THEN each has every verb."""
    verbs = {n for n in dir(StateStore) if not n.startswith("_")}
    for cls in (RedisStore, MemoryStore):
        missing = sorted(v for v in verbs if not callable(getattr(cls, v, None)))
        assert not missing, f"{cls.__name__} lacks {missing}"


def test_transitions_follow_the_state_machine_on_either_store(any_store):
    """GIVEN a raw improvement WHEN moved along, sideways, twice and for a missing id THEN
    applied / refused / noop / missing, exactly one timeline entry per applied move."""
    imp = make_improvement("Contract test proposal")
    assert any_store.create(imp, actor="t", reason="new") is True
    assert any_store.create(imp, actor="t", reason="again") is False
    assert any_store.transition(imp.id, Status.DEPLOYED, actor="t", reason="skip ahead").outcome == "refused"
    moved = any_store.transition(imp.id, Status.CATEGORIZED, actor="t", reason="routed",
                                 fields={"expert": "security"})
    assert (moved.outcome, moved.previous) == ("applied", "raw")
    assert any_store.transition(imp.id, Status.CATEGORIZED, actor="t", reason="again").outcome == "noop"
    assert any_store.transition("f" * 16, Status.CATEGORIZED, actor="t", reason="?").outcome == "missing"
    got = any_store.get(imp.id)
    assert got is not None and got.status is Status.CATEGORIZED and got.expert == "security"
    assert [e.to_status for e in any_store.timeline(imp.id)] == [Status.RAW, Status.CATEGORIZED]
    assert any_store.ids_with_status(Status.CATEGORIZED) == {imp.id}
    assert any_store.ids_with_status(Status.RAW) == set()
    any_store.note(imp.id, TimelineEntry(at=utcnow(), from_status="categorized",
                                         to_status="categorized", actor="sweeper", reason="resumed"))
    assert any_store.timeline(imp.id)[-1].actor == "sweeper"


def test_fields_once_counters_leases_locks_flags_and_the_breaker_on_either_store(any_store):
    """GIVEN one improvement WHEN fields, leases, locks, flags and rollbacks are used THEN
    both stores answer alike: first writer wins, only holders release, windows count."""
    imp = make_improvement("Another contract proposal")
    any_store.create(imp, actor="t", reason="new")
    any_store.set_fields(imp.id, {"git_commit": "abc"})
    assert any_store.fields(imp.id, "git_commit", "nope") == ["abc", None]
    assert any_store.set_once(imp.id, "plan", "first") and not any_store.set_once(imp.id, "plan", "second")
    assert any_store.field(imp.id, "plan") == "first"
    any_store.clear_fields(imp.id, "plan")
    assert any_store.field(imp.id, "plan") is None
    assert [any_store.increment_field(imp.id, "n") for _ in range(3)] == [1, 2, 3]
    assert any_store.fields_many([imp.id], "git_commit") == {imp.id: ["abc"]}

    assert any_store.take_leases("a" * 16, ["apps", "db"]) is None
    assert any_store.take_leases("b" * 16, ["db"]) == "a" * 16
    assert any_store.drop_leases("b" * 16, ["db"]) == 0  # not the holder
    assert any_store.drop_leases("a" * 16, ["apps", "db"]) == 2
    assert any_store.take_leases("b" * 16, ["db"]) is None

    assert any_store.acquire_lock(imp.id, "implementing", "task-1", ttl=60)
    assert any_store.acquire_lock(imp.id, "implementing", "task-1", ttl=60)  # the same message again
    assert not any_store.acquire_lock(imp.id, "implementing", "task-2", ttl=60)
    any_store.release_lock(imp.id, "implementing", "task-2")  # not its lock: nothing happens
    assert not any_store.acquire_lock(imp.id, "implementing", "task-2", ttl=60)
    any_store.release_lock(imp.id, "implementing", "task-1")
    assert any_store.acquire_lock(imp.id, "implementing", "task-2", ttl=60)

    any_store.set_flag("auto_approve_none", True, reason="breaker")
    assert any_store.flags()["auto_approve_none"] is True
    with pytest.raises(KeyError):
        any_store.set_flag("no_such_flag", True)
    now = utcnow()
    any_store.log_rollback(imp.id, "old", at=now - timedelta(hours=2))
    any_store.log_rollback(imp.id, "recent", at=now - timedelta(minutes=5))
    assert any_store.rollbacks_since(timedelta(hours=1), now) == 1
