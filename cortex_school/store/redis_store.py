"""Redis state store with the design's keys.

Keys (the design's, plus the few this implementation needs, marked +):

* ``improvement:<id>`` hash: every field of the improvement (nested records as JSON)
* ``improvement:<id>:timeline`` list (+): one JSON entry per applied transition (and per
  expert answer stored)
* ``improvement:<id>:assessments`` hash (+): each consulted expert's assessment
* stage sorted sets: ``improvements:raw``, ``improvements:category:<expert>``,
  ``improvements:approved``, ``improvements:pending_review``,
  ``improvements:implementation`` (score = priority), ``improvements:deployed``,
  ``improvements:verified``, ``improvements:failed``
* index sets: ``improvements:status:<status>``, ``improvements:video:<video_id>``, and
  ``improvements:index:category:<category>`` (+; the design also calls this
  ``improvements:category:<category>``, but that name is already the per-expert stage sorted
  set and one Redis key cannot be both a set and a sorted set)
* ``improvements:fingerprint:<hash>`` set (+): ids sharing a normalised description
* lists ``improvements:rollback_log``, ``improvements:rejected`` (+)
* hash ``improvements:flags`` (+): the override flags
* hash ``improvements:stats`` (+): running totals (expert calls, tokens, cache hits)
* ``improvements:expert_cache:<hash>``, ``improvements:expert_rate:*``,
  ``improvements:expert_slots:*`` (+): expert evaluation cache and limits

Every stage transition is one Lua script: it checks the current status against the
allowed sources, moves the id between stage and status sets, writes the fields and
appends the timeline entry, or does nothing at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

import redis
from redis.typing import EncodableT, FieldT

from cortex_school.models import (
    IMPROVEMENT_ID_PATTERN,
    Assessment,
    Improvement,
    ImprovementId,
    Rejection,
    Status,
    TimelineEntry,
    utcnow,
)
from cortex_school.states import PRIORITY_KEYS, STAGE_KEYS, sources_for

FLAGS_KEY = "improvements:flags"
ALERTS_KEY = "improvements:alerts"
DEAD_LETTER_KEY = "improvements:dead_letter"
# What "the store is unreachable" looks like: transient for every stage.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
# Seconds: buckets of the per-stage latency histograms (time spent in a status).
STAGE_LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
REJECTED_KEY = "improvements:rejected"
ROLLBACK_LOG_KEY = "improvements:rollback_log"
STATS_KEY = "improvements:stats"
OVERRIDE_FLAGS: dict[str, str] = {
    "auto_approve_integrations": "auto-approve integrations (normally human review)",
    "auto_approve_security": "security/database need only AUTO_APPROVE_THRESHOLD",
    "auto_approve_all": "emergency: approve every implementable improvement without conflicts",
    "auto_approve_none": "emergency: approve nothing automatically",
}


def improvement_key(improvement_id: str) -> str:
    return f"improvement:{improvement_id}"


def timeline_key(improvement_id: str) -> str:
    return f"improvement:{improvement_id}:timeline"


def status_key(status: str) -> str:
    return f"improvements:status:{status}"


def category_index_key(category: str) -> str:
    return f"improvements:index:category:{category}"


def assessments_key(improvement_id: str) -> str:
    return f"improvement:{improvement_id}:assessments"


def video_key(video_id: str) -> str:
    return f"improvements:video:{video_id}"


def fingerprint_key(fp: str) -> str:
    return f"improvements:fingerprint:{fp}"


_CREATE_LUA = """
-- KEYS: hash, timeline, raw zset, status set, category index, video index, fingerprint index
-- ARGV: id, fields(json), epoch, timeline entry(json)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local fields = cjson.decode(ARGV[2])
for k, v in pairs(fields) do
  redis.call('HSET', KEYS[1], k, v)
end
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'status_since', ARGV[3])
redis.call('HINCRBY', 'improvements:metrics:transitions', 'raw', 1)
local minute = 'improvements:metrics:minute:' .. tostring(math.floor(tonumber(ARGV[3]) / 60))
redis.call('HINCRBY', minute, 'raw', 1)
redis.call('EXPIRE', minute, 900)
return 1
"""

_SAVE_ASSESSMENT_LUA = """
-- KEYS: assessments hash, improvement hash, timeline. ARGV: expert, assessment json, iso time, actor, note
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local status = redis.call('HGET', KEYS[2], 'status') or ''
redis.call('RPUSH', KEYS[3], cjson.encode({at = ARGV[3], from_status = status,
  to_status = status, actor = ARGV[4], reason = ARGV[5]}))
return 1
"""

_TRANSITION_LUA = """
-- KEYS: hash, timeline
-- ARGV: id, target, allowed sources(json list), fields(json), epoch, iso time,
--       actor, reason, stage keys(json {status: [key]}), priority keys(json list), priority
local id, target = ARGV[1], ARGV[2]
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {'missing', ''}
end
if current == target then
  return {'noop', current}
end
local allowed = false
for _, s in ipairs(cjson.decode(ARGV[3])) do
  if s == current then allowed = true end
end
if not allowed then
  return {'refused', current}
end
local stage_keys = cjson.decode(ARGV[9])
local priority_keys = {}
for _, k in ipairs(cjson.decode(ARGV[10])) do priority_keys[k] = true end
local function expand(template)
  local expert = redis.call('HGET', KEYS[1], 'expert') or 'unrouted'
  return (string.gsub(template, '{expert}', expert))
end
for _, k in ipairs(stage_keys[current] or {}) do
  redis.call('ZREM', expand(k), id)
end
redis.call('SREM', 'improvements:status:' .. current, id)
for k, v in pairs(cjson.decode(ARGV[4])) do
  redis.call('HSET', KEYS[1], k, v)
end
-- Metrics: time spent in the status being left (a histogram per stage), transitions into
-- each status (a counter), and per-minute transitions (for the processing rate).
local now = tonumber(ARGV[5])
local since = tonumber(redis.call('HGET', KEYS[1], 'status_since') or '')
if since then
  local dt = now - since
  if dt < 0 then dt = 0 end
  local hist = 'improvements:metrics:latency:' .. current
  for _, le in ipairs(cjson.decode(ARGV[12])) do
    if dt <= le then redis.call('HINCRBY', hist, tostring(le), 1) end
  end
  redis.call('HINCRBY', hist, '+Inf', 1)
  redis.call('HINCRBYFLOAT', hist, 'sum', dt)
end
redis.call('HINCRBY', 'improvements:metrics:transitions', target, 1)
local minute = 'improvements:metrics:minute:' .. tostring(math.floor(now / 60))
redis.call('HINCRBY', minute, target, 1)
redis.call('EXPIRE', minute, 900)
redis.call('HSET', KEYS[1], 'status', target, 'updated_at', ARGV[6], 'status_since', ARGV[5])
for _, k in ipairs(stage_keys[target] or {}) do
  local key = expand(k)
  if priority_keys[k] then
    redis.call('ZADD', key, tonumber(ARGV[11]), id)
  else
    redis.call('ZADD', key, tonumber(ARGV[5]), id)
  end
end
redis.call('SADD', 'improvements:status:' .. target, id)
redis.call('RPUSH', KEYS[2], cjson.encode({at = ARGV[6], from_status = current,
  to_status = target, actor = ARGV[7], reason = ARGV[8]}))
return {'applied', current}
"""


LEASE_PREFIX = "improvements:namespace_lease:"
_ACQUIRE_LEASES_LUA = """
-- KEYS: lease keys. ARGV: improvement id. Returns the first other holder, or '' when taken.
for _, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur and cur ~= ARGV[1] then return cur end
end
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1]) end
return ''
"""
_RELEASE_LEASES_LUA = """
-- KEYS: lease keys. ARGV: holder. Deletes only leases that holder still has.
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k); n = n + 1 end
end
return n
"""
_RELEASE_IF_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class TransitionResult:
    outcome: Literal["applied", "noop", "refused", "missing"]
    previous: str | None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


class TransitionRefused(Exception):
    """A transition that the state machine does not allow from the current status."""


def _hash_mapping(mapping: Mapping[str, str]) -> Mapping[FieldT, EncodableT]:
    """``mapping`` as redis-py types HSET's ``mapping`` (a Mapping is invariant in its key
    type, so ``Mapping[str, str]`` is not accepted as it stands)."""
    return cast("Mapping[FieldT, EncodableT]", mapping)


# The store's client is opened with decode_responses=True (:func:`connect`): every reply is
# str, so the ``bytes | str`` replies redis-py declares are cast to str where they are read.
class RedisStore:
    """The pipeline's state: improvements, their timelines, flags and logs."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._create = client.register_script(_CREATE_LUA)
        self._transition = client.register_script(_TRANSITION_LUA)
        self._save_assessment = client.register_script(_SAVE_ASSESSMENT_LUA)
        self._release_if = client.register_script(_RELEASE_IF_LUA)
        self._acquire_leases = client.register_script(_ACQUIRE_LEASES_LUA)
        self._release_leases = client.register_script(_RELEASE_LEASES_LUA)

    @classmethod
    def from_url(cls, url: str) -> "RedisStore":
        return cls(connect(url))

    def ping(self) -> bool:
        return bool(self._redis.ping())

    # -- improvements -------------------------------------------------------
    def create(self, improvement: Improvement, *, actor: str, reason: str) -> bool:
        """Store a new raw improvement; False (and no change) if the id already exists."""
        now = improvement.created_at
        entry = TimelineEntry(
            at=now, from_status=None, to_status=Status.RAW, actor=actor, reason=reason
        )
        created = self._create(
            keys=[
                improvement_key(improvement.id),
                timeline_key(improvement.id),
                STAGE_KEYS[Status.RAW][0],
                status_key(Status.RAW),
                category_index_key(improvement.category),
                video_key(improvement.video_id),
                fingerprint_key(improvement.fingerprint),
            ],
            args=[
                improvement.id,
                json.dumps(improvement.to_hash()),
                now.timestamp(),
                entry.model_dump_json(),
            ],
        )
        return bool(created)

    def get(self, improvement_id: str) -> Improvement | None:
        data = cast("dict[str, str]", self._redis.hgetall(improvement_key(improvement_id)))
        return Improvement.from_hash(data) if data else None

    def raw_fields(self, improvement_id: str) -> dict[str, str]:
        return cast("dict[str, str]", self._redis.hgetall(improvement_key(improvement_id)))

    def fields(self, improvement_id: str, *names: str) -> list[str | None]:
        """Some of the improvement's fields, in order (None for each one it lacks)."""
        return list(cast("list[str | None]",
                         self._redis.hmget(improvement_key(improvement_id), list(names))))

    def field(self, improvement_id: str, name: str) -> str | None:
        return self.fields(improvement_id, name)[0]

    def set_fields(self, improvement_id: str, mapping: dict[str, str]) -> None:
        """Write fields that do not change the status (progress of a stage, notes)."""
        if mapping:
            self._redis.hset(improvement_key(improvement_id), mapping=_hash_mapping(mapping))

    def set_once(self, improvement_id: str, name: str, value: str) -> bool:
        """Write a field only if it is not there yet; True for the one caller that did."""
        return bool(self._redis.hsetnx(improvement_key(improvement_id), name, value))

    def clear_fields(self, improvement_id: str, *names: str) -> None:
        if names:
            self._redis.hdel(improvement_key(improvement_id), *names)

    def exists(self, improvement_id: str) -> bool:
        return bool(self._redis.exists(improvement_key(improvement_id)))

    def transition(
        self,
        improvement_id: str,
        target: Status,
        *,
        actor: str,
        reason: str,
        fields: dict[str, str] | None = None,
        priority: float = 0.0,
        at: datetime | None = None,
    ) -> TransitionResult:
        """Move to ``target`` if the state machine allows it from the current status.

        Returns ``noop`` when already there (re-runs are safe), ``refused`` when the
        move is not allowed, ``missing`` for an unknown id; only ``applied`` changed anything.
        """
        now = at or utcnow()
        outcome, previous = self._transition(
            keys=[improvement_key(improvement_id), timeline_key(improvement_id)],
            args=[
                improvement_id,
                target.value,
                json.dumps(sorted(s.value for s in sources_for(target))),
                json.dumps(fields or {}),
                now.timestamp(),
                now.isoformat(),
                actor,
                reason,
                json.dumps({s.value: list(keys) for s, keys in STAGE_KEYS.items()}),
                json.dumps(sorted(PRIORITY_KEYS)),
                priority,
                json.dumps(list(STAGE_LATENCY_BUCKETS)),
            ],
        )
        return TransitionResult(outcome=outcome, previous=previous or None)

    def save_assessment(
        self, improvement_id: str, assessment: Assessment, *, actor: str, note: str
    ) -> bool:
        """Keep one expert's assessment (first answer wins) and note it in the timeline.

        Returns False, changing nothing, when that expert's assessment is already stored.
        """
        return bool(self._save_assessment(
            keys=[assessments_key(improvement_id), improvement_key(improvement_id),
                  timeline_key(improvement_id)],
            args=[assessment.expert, assessment.model_dump_json(), utcnow().isoformat(), actor, note],
        ))

    def assessments(self, improvement_id: str) -> dict[str, Assessment]:
        return {
            expert: Assessment.model_validate_json(raw)
            for expert, raw in cast(dict[str, str],
                                    self._redis.hgetall(assessments_key(improvement_id))).items()
        }

    def count(self, field: str, amount: float = 1) -> None:
        """Running totals for metrics (``improvements:stats``)."""
        if isinstance(amount, int):
            self._redis.hincrby(STATS_KEY, field, amount)
        else:
            self._redis.hincrbyfloat(STATS_KEY, field, amount)

    def observe(self, name: str, value: float, buckets: tuple[float, ...]) -> None:
        """One observation of a histogram kept in Redis (``improvements:metrics:hist:<name>``),
        so every worker process adds to the same one."""
        key = f"improvements:metrics:hist:{name}"
        pipe = self._redis.pipeline(transaction=False)
        for le in buckets:
            if value <= le:
                pipe.hincrby(key, str(le), 1)
        pipe.hincrby(key, "+Inf", 1)
        pipe.hincrbyfloat(key, "sum", value)
        pipe.execute()

    def stats(self) -> dict[str, float]:
        return {k: float(v) for k, v in cast("dict[str, str]", self._redis.hgetall(STATS_KEY)).items()}

    def timeline(self, improvement_id: str) -> list[TimelineEntry]:
        return [
            TimelineEntry.model_validate_json(raw)
            for raw in self._redis.lrange(timeline_key(improvement_id), 0, -1)
        ]

    def ids_with_status(self, status: Status | str) -> set[str]:
        return set(cast("set[str]", self._redis.smembers(status_key(status))))

    def ids_with_fingerprint(self, fp: str) -> set[str]:
        return set(cast("set[str]", self._redis.smembers(fingerprint_key(fp))))

    def ids_for_video(self, video_id: str) -> set[str]:
        return set(cast("set[str]", self._redis.smembers(video_key(video_id))))

    def many(self, ids: Iterable[str]) -> list[Improvement]:
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(improvement_key(i))
        return [Improvement.from_hash(d) for d in pipe.execute() if d]

    def funnel(self) -> dict[Status, int]:
        pipe = self._redis.pipeline(transaction=False)
        for status in Status:
            pipe.scard(status_key(status))
        return dict(zip(Status, pipe.execute(), strict=True))

    def stage_members(self, key: str) -> list[tuple[str, float]]:
        scored = cast("list[tuple[str, float]]", self._redis.zrange(key, 0, -1, withscores=True))
        return [(m, s) for m, s in scored]

    def purge(self) -> int:
        """Delete every key this store owns (not the broker's). For tests and ``demo --reset``."""
        deleted = 0
        for pattern in ("improvement:*", "improvements:*", "rag:improvements:*"):
            batch = list(self._redis.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 500):
                deleted += self._redis.delete(*batch[start : start + 500])
        return deleted

    def fields_many(self, ids: Iterable[str], *names: str) -> dict[str, list[str | None]]:
        """The same fields of many improvements in one round trip: id → values in order."""
        ordered = list(ids)
        pipe = self._redis.pipeline(transaction=False)
        for i in ordered:
            pipe.hmget(improvement_key(i), list(names))
        return dict(zip(ordered, pipe.execute(), strict=True))

    def increment_field(self, improvement_id: str, name: str, amount: int = 1) -> int:
        return int(self._redis.hincrby(improvement_key(improvement_id), name, amount))

    def note(self, improvement_id: str, entry: TimelineEntry) -> None:
        """A timeline entry that is not a transition (e.g. the sweeper re-enqueued it)."""
        self._redis.rpush(timeline_key(improvement_id), entry.model_dump_json())

    # -- namespace leases (the rules are in delivery.leases) ---------------------
    def take_leases(self, improvement_id: str, names: list[str]) -> str | None:
        """Take every named lease for ``improvement_id``, or none: the first other holder."""
        holder = self._acquire_leases(keys=[LEASE_PREFIX + n for n in names], args=[improvement_id])
        return holder or None

    def drop_leases(self, holder: str, names: list[str]) -> int:
        """Delete the named leases that ``holder`` still has."""
        if not names:
            return 0
        return int(self._release_leases(keys=[LEASE_PREFIX + n for n in names], args=[holder]))

    def lease_holders(self) -> dict[str, str]:
        return {k[len(LEASE_PREFIX):]: cast("str | None", self._redis.get(k)) or ""
                for k in self._redis.scan_iter(match=f"{LEASE_PREFIX}*", count=1000)}

    # -- metrics (read by the /metrics exporter) ---------------------------------
    def transition_counts(self) -> dict[str, int]:
        counts = cast("dict[str, str]", self._redis.hgetall("improvements:metrics:transitions"))
        return {k: int(v) for k, v in counts.items()}

    def recent_transitions(self, minutes: int, now: float) -> dict[str, int]:
        """Transitions into each status over the last ``minutes`` whole minutes."""
        now_minute = int(now // 60)
        pipe = self._redis.pipeline(transaction=False)
        for minute in range(now_minute - minutes + 1, now_minute + 1):
            pipe.hgetall(f"improvements:metrics:minute:{minute}")
        recent: dict[str, int] = {}
        for per_minute in pipe.execute():
            for stage, count in per_minute.items():
                recent[stage] = recent.get(stage, 0) + int(count)
        return recent

    def histogram(self, name: str) -> dict[str, str]:
        """A histogram kept by :meth:`observe` (``improvements:metrics:hist:<name>``)."""
        return dict(cast("dict[str, str]", self._redis.hgetall(f"improvements:metrics:hist:{name}")))

    def stage_latency(self, status: str) -> dict[str, str]:
        """The time-in-status histogram the transition script keeps."""
        return dict(cast("dict[str, str]", self._redis.hgetall(f"improvements:metrics:latency:{status}")))

    def list_lengths(self, keys: list[str]) -> list[int]:
        """Lengths of Redis lists, e.g. the broker's queues (kombu keeps one list per queue
        and priority)."""
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return [int(n) for n in pipe.execute()]

    def rollback_log_length(self) -> int:
        return int(self._redis.llen(ROLLBACK_LOG_KEY))

    def rejection_count(self) -> int:
        return int(self._redis.llen(REJECTED_KEY))

    # -- locks ----------------------------------------------------------------
    def acquire_lock(self, improvement_id: str, name: str, token: str, *, ttl: float) -> bool:
        """Hold ``improvement:<id>:<name>`` for ``token`` (a task id) for ``ttl`` seconds;
        True also when ``token`` already holds it (a redelivered message takes over)."""
        key = f"{improvement_key(improvement_id)}:{name}"
        return bool(self._redis.set(key, token, nx=True, ex=max(1, int(ttl)))
                    or self._redis.get(key) == token)

    def release_lock(self, improvement_id: str, name: str, token: str) -> None:
        self._release_if(keys=[f"{improvement_key(improvement_id)}:{name}"], args=[token])

    # -- task bookkeeping ---------------------------------------------------
    def count_delivery(self, task_id: str, retry: int) -> int:
        """One more start of this task message (per retry); for dead-lettering."""
        key = f"improvements:deliveries:{task_id}:{retry}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 86400)
        return int(pipe.execute()[0])

    def clear_delivery(self, task_id: str, retry: int) -> None:
        self._redis.delete(f"improvements:deliveries:{task_id}:{retry}")

    def count_attempt(self, task_id: str) -> int:
        """One more consecutive transient failure of this task message (retries keep its id)."""
        key = f"improvements:attempts:{task_id}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 86400)
        return int(pipe.execute()[0])

    def clear_attempts(self, task_id: str) -> None:
        try:
            self._redis.delete(f"improvements:attempts:{task_id}")
        except CONNECTION_ERRORS:
            pass  # it expires on its own

    def dead_letter(self, **record: object) -> None:
        self._redis.lpush(DEAD_LETTER_KEY, json.dumps({**record, "at": utcnow().isoformat()}))
        self.count("dead_lettered")

    def dead_letters(self, key: str = DEAD_LETTER_KEY, limit: int = 100) -> list[dict[str, object]]:
        out = []
        for raw in self._redis.lrange(key, 0, limit - 1):
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"raw": raw[:500]})
        return out

    def dead_letter_count(self, key: str = DEAD_LETTER_KEY) -> int:
        return int(self._redis.llen(key))

    # -- alerts -------------------------------------------------------------
    def alert(self, improvement_id: str, text: str, level: str) -> None:
        self._redis.lpush(ALERTS_KEY, json.dumps({"improvement_id": improvement_id, "level": level,
                                                 "text": text, "at": utcnow().isoformat()}))

    def alerts(self, limit: int = 100) -> list[dict[str, object]]:
        return [json.loads(raw) for raw in self._redis.lrange(ALERTS_KEY, 0, limit - 1)]

    # -- rejected input -----------------------------------------------------
    def record_rejection(self, rejection: Rejection) -> None:
        self._redis.rpush(REJECTED_KEY, rejection.model_dump_json())

    def rejections(self, limit: int = 1000) -> list[Rejection]:
        return [
            Rejection.model_validate_json(raw)
            for raw in self._redis.lrange(REJECTED_KEY, -limit, -1)
        ]

    # -- flags --------------------------------------------------------------
    def flags(self) -> dict[str, bool]:
        stored = self._redis.hgetall(FLAGS_KEY)
        return {name: stored.get(name) == "true" for name in OVERRIDE_FLAGS}

    def set_flag(self, name: str, value: bool, *, reason: str | None = None) -> None:
        """Set an override flag; ``reason`` (why the system set it) is kept beside it."""
        if name not in OVERRIDE_FLAGS:
            raise KeyError(f"unknown flag {name!r}; known: {', '.join(OVERRIDE_FLAGS)}")
        mapping = {name: "true" if value else "false"}
        if reason is not None:
            mapping[f"{name}_reason"] = reason[:500]
        self._redis.hset(FLAGS_KEY, mapping=_hash_mapping(mapping))

    def flag_reason(self, name: str) -> str | None:
        return cast("str | None", self._redis.hget(FLAGS_KEY, f"{name}_reason"))

    # -- rollbacks (written by the rollback stage, read by the circuit breaker) --
    def log_rollback(self, improvement_id: str, reason: str, at: datetime | None = None) -> None:
        entry = {
            "improvement_id": improvement_id,
            "reason": reason,
            "timestamp": (at or utcnow()).isoformat(),
        }
        self._redis.lpush(ROLLBACK_LOG_KEY, json.dumps(entry))

    def rollback_log(self, limit: int = 1000) -> list[dict[str, str]]:
        """The rollback log, newest first (malformed lines skipped)."""
        out = []
        for raw in self._redis.lrange(ROLLBACK_LOG_KEY, 0, limit - 1):
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def rollbacks_since(self, window: timedelta, now: datetime | None = None) -> int:
        """Rollbacks logged within ``window`` (newest first, so stop at the first older one)."""
        cutoff = (now or utcnow()) - window
        count = 0
        for raw in self._redis.lrange(ROLLBACK_LOG_KEY, 0, 999):
            try:
                stamp = datetime.fromisoformat(json.loads(raw)["timestamp"])
            except (ValueError, KeyError, TypeError):
                continue  # a malformed log line must not open or close the breaker
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=cutoff.tzinfo)
            if stamp < cutoff:
                break
            count += 1
        return count


def connect(url: str, *, binary: bool = False) -> redis.Redis:
    """The one way this package opens a Redis connection (the store; and the adapters
    that keep their own structures in the same Redis: expert cache and limits, the
    embedded vector index, the simulated cluster, the bridge's source list)."""
    return redis.Redis.from_url(url, decode_responses=not binary, health_check_interval=30)


def ensure_valid_id(value: str) -> ImprovementId:
    """Refuse anything that is not an improvement id before it reaches a key."""
    if not isinstance(value, str) or not IMPROVEMENT_ID_PATTERN.match(value):
        raise ValueError(f"not an improvement id: {value!r:.80}")
    return ImprovementId(value)
