"""The state machine on the real Redis: allowed moves apply atomically, the rest change nothing."""

import itertools
import json
from datetime import timedelta

import pytest

from cortex_school.models import Status, utcnow
from cortex_school.states import ALLOWED_TRANSITIONS, STAGE_KEYS
from cortex_school.store import status_key
from tests.factories import make_improvement


def force_status(store, imp_id: str, status: Status, expert: str = "security") -> None:
    """Put an improvement at ``status`` with its stage and status sets, bypassing the machine."""
    r = store._redis
    current = r.hget(f"improvement:{imp_id}", "status")
    r.srem(status_key(current), imp_id)
    for key in STAGE_KEYS.get(Status(current), ()):
        r.zrem(key.replace("{expert}", expert), imp_id)
    r.hset(f"improvement:{imp_id}", mapping={"status": status.value, "expert": expert})
    r.sadd(status_key(status), imp_id)
    for key in STAGE_KEYS.get(status, ()):
        r.zadd(key.replace("{expert}", expert), {imp_id: 1})


def snapshot(store, imp_id):
    r = store._redis
    keys = sorted(r.scan_iter(match="improvement*", count=1000))
    out = {}
    for k in keys:
        t = r.type(k)
        out[k] = (t, {"hash": r.hgetall, "list": lambda k: r.lrange(k, 0, -1),
                      "set": r.smembers, "zset": lambda k: r.zrange(k, 0, -1, withscores=True)}[t](k))
    return out


def test_create_writes_the_design_keys_once(store):
    imp = make_improvement(category="knowledge")
    assert store.create(imp, actor="test", reason="first") is True
    assert store.create(imp, actor="test", reason="again") is False
    r = store._redis
    assert r.hget(f"improvement:{imp.id}", "status") == "raw"
    assert r.zscore("improvements:raw", imp.id) is not None
    assert r.sismember("improvements:status:raw", imp.id)
    assert r.sismember("improvements:index:category:knowledge", imp.id)
    assert r.sismember(f"improvements:video:{imp.video_id}", imp.id)
    assert len(store.timeline(imp.id)) == 1
    assert store.get(imp.id) == imp


def test_transition_moves_stage_sets_fields_and_timeline_together(store):
    imp = make_improvement()
    store.create(imp, actor="test", reason="in")
    result = store.transition(imp.id, Status.CATEGORIZED, actor="router", reason="category",
                              fields={"expert": "architecture"})
    assert result.applied and result.previous == "raw"
    r = store._redis
    assert r.zscore("improvements:raw", imp.id) is None
    assert r.zscore("improvements:category:architecture", imp.id) is not None
    assert not r.sismember("improvements:status:raw", imp.id)
    assert r.sismember("improvements:status:categorized", imp.id)
    last = store.timeline(imp.id)[-1]
    assert (last.from_status, last.to_status, last.actor, last.reason) == (
        "raw", "categorized", "router", "category")


def test_approved_enters_implementation_with_priority_score(store):
    imp = make_improvement()
    store.create(imp, actor="t", reason="t")
    force_status(store, imp.id, Status.VALIDATED, expert="architecture")
    store.transition(imp.id, Status.APPROVED, actor="gate", reason="ok", priority=92.0)
    assert store._redis.zscore("improvements:implementation", imp.id) == 92.0
    assert store._redis.zscore("improvements:approved", imp.id) > 1e9  # a timestamp


def test_same_transition_twice_is_a_noop_without_a_second_timeline_entry(store):
    imp = make_improvement()
    store.create(imp, actor="t", reason="t")
    store.transition(imp.id, Status.CATEGORIZED, actor="r", reason="x", fields={"expert": "architecture"})
    before = snapshot(store, imp.id)
    again = store.transition(imp.id, Status.CATEGORIZED, actor="r", reason="x")
    assert again.outcome == "noop"
    assert snapshot(store, imp.id) == before


def test_unknown_id_is_missing(store):
    assert store.transition("0" * 16, Status.CATEGORIZED, actor="t", reason="t").outcome == "missing"
    assert not store._redis.exists("improvement:" + "0" * 16)


PAIRS = [(a, b) for a, b in itertools.product(Status, Status) if a != b]


@pytest.mark.slow  # hundreds of cases: make test and CI run them, the fast tier does not
@pytest.mark.parametrize("source,target", PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_applies_iff_the_table_allows_it(store, source, target):
    imp = make_improvement()
    store.create(imp, actor="t", reason="t")
    force_status(store, imp.id, source)
    before = snapshot(store, imp.id)
    result = store.transition(imp.id, target, actor="t", reason="t", fields={"probe": "1"})
    if target in ALLOWED_TRANSITIONS[source]:
        assert result.outcome == "applied"
        assert store._redis.hget(f"improvement:{imp.id}", "status") == target.value
        assert store._redis.sismember(status_key(target), imp.id)
        assert not store._redis.sismember(status_key(source), imp.id)
    else:
        assert (result.outcome, result.previous) == ("refused", source.value)
        assert snapshot(store, imp.id) == before


def test_rollbacks_since_counts_only_the_window(store):
    now = utcnow()
    for minutes in (200, 90, 50, 20, 5):
        store.log_rollback("a" * 16, "pod crash", at=now - timedelta(minutes=minutes))
    store._redis.lpush("improvements:rollback_log", "not json")
    assert store.rollbacks_since(timedelta(hours=1), now=now) == 3
    entry = json.loads(store._redis.lindex("improvements:rollback_log", 1))
    assert set(entry) == {"improvement_id", "reason", "timestamp"}


def test_flags_default_false_and_refuse_unknown_names(store):
    assert not any(store.flags().values())
    store.set_flag("auto_approve_none", True)
    assert store.flags()["auto_approve_none"] is True
    with pytest.raises(KeyError):
        store.set_flag("approve_my_stuff", True)
