"""The state store in memory: the same verbs and rules as the Redis store, for unit tests
of domain functions (stages, the sweeper, delivery steps) without a Redis.

Not for running the pipeline: it lives in one process. Every verb takes one lock, so a
transition is as atomic here as the Lua script makes it in Redis.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from cortex_school.models import (
    Assessment,
    Improvement,
    Rejection,
    Status,
    TimelineEntry,
    utcnow,
)
from cortex_school.states import sources_for
from cortex_school.store.redis_store import OVERRIDE_FLAGS, TransitionResult


class MemoryStore:
    """A :class:`~cortex_school.store.protocol.StateStore` held in dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._hashes: dict[str, dict[str, str]] = {}
        self._timelines: dict[str, list[TimelineEntry]] = defaultdict(list)
        self._assessments: dict[str, dict[str, Assessment]] = defaultdict(dict)
        self._by_status: dict[str, set[str]] = defaultdict(set)
        self._by_fingerprint: dict[str, set[str]] = defaultdict(set)
        self._by_video: dict[str, set[str]] = defaultdict(set)
        self._flags: dict[str, str] = {}
        self._rollbacks: list[dict[str, str]] = []  # newest first, as the Redis log
        self._rejections: list[Rejection] = []
        self._alerts: list[dict[str, object]] = []
        self._dead_letters: list[dict[str, object]] = []
        self._stats: dict[str, float] = defaultdict(float)
        self._leases: dict[str, str] = {}
        self._locks: dict[str, str] = {}

    # -- improvements ---------------------------------------------------------
    def create(self, improvement: Improvement, *, actor: str, reason: str) -> bool:
        with self._lock:
            if improvement.id in self._hashes:
                return False
            now = improvement.created_at
            data = improvement.to_hash()
            data["status_since"] = str(now.timestamp())
            self._hashes[improvement.id] = data
            self._by_status[Status.RAW.value].add(improvement.id)
            self._by_fingerprint[improvement.fingerprint].add(improvement.id)
            self._by_video[improvement.video_id].add(improvement.id)
            self._timelines[improvement.id].append(TimelineEntry(
                at=now, from_status=None, to_status=Status.RAW, actor=actor, reason=reason))
            return True

    def get(self, improvement_id: str) -> Improvement | None:
        with self._lock:
            data = self._hashes.get(improvement_id)
            return Improvement.from_hash(dict(data)) if data else None

    def exists(self, improvement_id: str) -> bool:
        return improvement_id in self._hashes

    def many(self, ids: Iterable[str]) -> list[Improvement]:
        return [i for i in (self.get(x) for x in ids) if i is not None]

    def ids_with_status(self, status: Status | str) -> set[str]:
        return set(self._by_status[Status(status).value])

    def ids_with_fingerprint(self, fp: str) -> set[str]:
        return set(self._by_fingerprint[fp])

    def ids_for_video(self, video_id: str) -> set[str]:
        return set(self._by_video[video_id])

    def transition(self, improvement_id: str, target: Status, *, actor: str, reason: str,
                   fields: dict[str, str] | None = None, priority: float = 0.0,
                   at: datetime | None = None) -> TransitionResult:
        now = at or utcnow()
        with self._lock:
            data = self._hashes.get(improvement_id)
            if data is None:
                return TransitionResult("missing", None)
            current = data["status"]
            if current == target.value:
                return TransitionResult("noop", current)
            if Status(current) not in sources_for(target):
                return TransitionResult("refused", current)
            data.update(fields or {})
            data.update(status=target.value, updated_at=now.isoformat(),
                        status_since=str(now.timestamp()))
            self._by_status[current].discard(improvement_id)
            self._by_status[target.value].add(improvement_id)
            self._timelines[improvement_id].append(TimelineEntry(
                at=now, from_status=current, to_status=target, actor=actor, reason=reason))
            return TransitionResult("applied", current)

    def timeline(self, improvement_id: str) -> list[TimelineEntry]:
        return list(self._timelines.get(improvement_id, []))

    def note(self, improvement_id: str, entry: TimelineEntry) -> None:
        with self._lock:
            self._timelines[improvement_id].append(entry)

    # -- fields -----------------------------------------------------------------
    def raw_fields(self, improvement_id: str) -> dict[str, str]:
        return dict(self._hashes.get(improvement_id, {}))

    def fields(self, improvement_id: str, *names: str) -> list[str | None]:
        data = self._hashes.get(improvement_id, {})
        return [data.get(n) for n in names]

    def field(self, improvement_id: str, name: str) -> str | None:
        return self.fields(improvement_id, name)[0]

    def fields_many(self, ids: Iterable[str], *names: str) -> dict[str, list[str | None]]:
        return {i: self.fields(i, *names) for i in ids}

    def _hash(self, improvement_id: str) -> dict[str, str]:
        # As HSET does in Redis, writing a field of a missing improvement creates it.
        return self._hashes.setdefault(improvement_id, {})

    def set_fields(self, improvement_id: str, mapping: dict[str, str]) -> None:
        if "status" in mapping:
            raise ValueError("set_fields never changes the status; transition does")
        with self._lock:
            self._hash(improvement_id).update(mapping)

    def set_once(self, improvement_id: str, name: str, value: str) -> bool:
        with self._lock:
            data = self._hash(improvement_id)
            if name in data:
                return False
            data[name] = value
            return True

    def clear_fields(self, improvement_id: str, *names: str) -> None:
        with self._lock:
            for n in names:
                self._hashes.get(improvement_id, {}).pop(n, None)

    def increment_field(self, improvement_id: str, name: str, amount: int = 1) -> int:
        with self._lock:
            data = self._hash(improvement_id)
            value = int(data.get(name, "0")) + amount
            data[name] = str(value)
            return value

    # -- findings -------------------------------------------------------------------
    def save_assessment(self, improvement_id: str, assessment: Assessment, *, actor: str,
                        note: str) -> bool:
        with self._lock:
            if assessment.expert in self._assessments[improvement_id]:
                return False
            self._assessments[improvement_id][assessment.expert] = assessment
            status = self._hashes.get(improvement_id, {}).get("status", "")
            self._timelines[improvement_id].append(TimelineEntry.model_validate(
                {"at": utcnow(), "from_status": status or None, "to_status": status,
                 "actor": actor, "reason": note}))
            return True

    def assessments(self, improvement_id: str) -> dict[str, Assessment]:
        return dict(self._assessments.get(improvement_id, {}))

    def record_rejection(self, rejection: Rejection) -> None:
        self._rejections.append(rejection)

    def rejections(self, limit: int = 1000) -> list[Rejection]:
        return self._rejections[-limit:]

    # -- flags, rollbacks, alerts, dead letters --------------------------------------
    def flags(self) -> dict[str, bool]:
        return {name: self._flags.get(name) == "true" for name in OVERRIDE_FLAGS}

    def set_flag(self, name: str, value: bool, *, reason: str | None = None) -> None:
        if name not in OVERRIDE_FLAGS:
            raise KeyError(f"unknown flag {name!r}; known: {', '.join(OVERRIDE_FLAGS)}")
        self._flags[name] = "true" if value else "false"
        if reason is not None:
            self._flags[f"{name}_reason"] = reason[:500]

    def flag_reason(self, name: str) -> str | None:
        return self._flags.get(f"{name}_reason")

    def log_rollback(self, improvement_id: str, reason: str, at: datetime | None = None) -> None:
        self._rollbacks.insert(0, {"improvement_id": improvement_id, "reason": reason,
                                   "timestamp": (at or utcnow()).isoformat()})

    def rollback_log(self, limit: int = 1000) -> list[dict[str, str]]:
        return [dict(r) for r in self._rollbacks[:limit]]

    def rollbacks_since(self, window: timedelta, now: datetime | None = None) -> int:
        cutoff = (now or utcnow()) - window
        return sum(1 for r in self._rollbacks[:1000]
                   if datetime.fromisoformat(r["timestamp"]) >= cutoff)

    def alert(self, improvement_id: str, text: str, level: str) -> None:
        self._alerts.insert(0, {"improvement_id": improvement_id, "level": level, "text": text,
                                "at": utcnow().isoformat()})

    def alerts(self, limit: int = 100) -> list[dict[str, object]]:
        return self._alerts[:limit]

    def dead_letter(self, **record: object) -> None:
        self._dead_letters.insert(0, {**record, "at": utcnow().isoformat()})
        self.count("dead_lettered")

    def dead_letters(self, limit: int = 100) -> list[dict[str, object]]:
        return self._dead_letters[:limit]

    # -- counters -----------------------------------------------------------------------
    def count(self, field: str, amount: float = 1) -> None:
        with self._lock:
            self._stats[field] += amount

    def stats(self) -> dict[str, float]:
        return dict(self._stats)

    def observe(self, name: str, value: float, buckets: tuple[float, ...]) -> None:
        with self._lock:
            self._stats[f"hist:{name}:count"] += 1
            self._stats[f"hist:{name}:sum"] += value

    # -- leases and locks -----------------------------------------------------------------
    def take_leases(self, improvement_id: str, names: list[str]) -> str | None:
        with self._lock:
            for n in names:
                holder = self._leases.get(n)
                if holder is not None and holder != improvement_id:
                    return holder
            for n in names:
                self._leases[n] = improvement_id
            return None

    def drop_leases(self, holder: str, names: list[str]) -> int:
        with self._lock:
            dropped = [n for n in names if self._leases.get(n) == holder]
            for n in dropped:
                del self._leases[n]
            return len(dropped)

    def lease_holders(self) -> dict[str, str]:
        return dict(self._leases)

    def acquire_lock(self, improvement_id: str, name: str, token: str, *, ttl: float) -> bool:
        key = f"{improvement_id}:{name}"
        with self._lock:
            held = self._locks.setdefault(key, token)
            return held == token

    def release_lock(self, improvement_id: str, name: str, token: str) -> None:
        key = f"{improvement_id}:{name}"
        with self._lock:
            if self._locks.get(key) == token:
                del self._locks[key]

    def dump(self) -> str:
        """Everything, as JSON (for a failing test's message)."""
        return json.dumps({"hashes": self._hashes, "leases": self._leases}, indent=1, default=str)
