"""Stuck improvements: found, recorded, re-enqueued, and handed over after repeated tries."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from cortex_school.models import Status, utcnow
from cortex_school.sweeper import find_stuck, sweep
from tests.factories import make_improvement


@pytest.fixture
def store(any_store):
    """The sweeper runs on either store."""
    return any_store


def stuck_at(store, status, seconds_ago, video):
    imp = make_improvement(f"Stuck proposal {video}", video_id=video)
    store.create(imp, actor="test", reason="test")
    path = {Status.CATEGORIZED: [Status.CATEGORIZED],
            Status.DEPLOYED: [Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
                              Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED]}[status]
    for target in path:
        store.transition(imp.id, target, actor="test", reason="test")
    store.set_fields(imp.id, {"status_since": str(time.time() - seconds_ago)})
    return imp


def test_stuck_improvements_are_resumed_then_handed_over(store):
    old = stuck_at(store, Status.CATEGORIZED, 2000, "stuckvid001")
    fresh = stuck_at(store, Status.CATEGORIZED, 10, "stuckvid002")
    watched = stuck_at(store, Status.DEPLOYED, 1000, "stuckvid003")  # inside window + health time
    found = find_stuck(store, stuck_after=900, health_window=300)
    assert [s.improvement_id for s in found] == [old.id]
    resumed, handed = [], []
    result = sweep(store, found, resume=lambda i: resumed.append(i.id),
                   give_up=lambda i, why: handed.append((i.id, why)))
    assert result == {old.id: "resumed 1/3"} and resumed == [old.id]
    assert store.raw_fields(old.id)["stuck_reason"].startswith("stuck in categorized for 2000")
    assert store.timeline(old.id)[-1].actor == "stuck-sweeper"
    # Just resumed: not stuck again until a full window has passed.
    assert find_stuck(store, stuck_after=900, health_window=300) == []
    assert fresh.id not in resumed and watched.id not in resumed
    # Later sweeps (each a window apart): two more resumes, then it goes to a person.
    for n in range(1, 4):
        at = utcnow() + timedelta(seconds=1000 * n)
        again = [s for s in find_stuck(store, stuck_after=900, health_window=300, now=at)
                 if s.improvement_id == old.id]
        sweep(store, again, resume=lambda i: resumed.append(i.id),
              give_up=lambda i, why: handed.append((i.id, why)), now=at)
    assert resumed.count(old.id) == 3
    assert handed == [(old.id, handed[0][1])] and "3 resumes did not help" in handed[0][1]
