"""Everything that needs attention now, and the gauges of work that waits.

One reading of the store (and of the broker's consumers) gives both:

* :func:`collect_alerts` for ``cortex-school alerts``: improvements waiting on a person
  longer than a threshold, stuck work, dead letters, failed rollbacks, an open circuit
  breaker, and queues with work and no consumer; each with a severity, what, and since when;
* :class:`AttentionCollector`, the exporter's gauges of the same things
  (``cortex_school_waiting_on_person{reason}``, ``cortex_school_oldest_review_age_seconds``,
  ``cortex_school_stuck_improvements``, ``cortex_school_dead_letters_total``,
  ``cortex_school_circuit_breaker_open``, ``cortex_queue_consumers{queue}``), which the
  chart's PrometheusRule alerts on.

It sits above :mod:`cortex_school.waiting` (the one current reason) and
:mod:`cortex_school.metrics` (the counters kept in Redis), so the exporter is assembled
here (:func:`registry_for`, :func:`serve`). Read-only: nothing here changes state.

Consumers come from the workers themselves (``inspect().active_queues()``, a broadcast
answered within ``timeout``): no answer from any worker means no consumer anywhere; a
broker that cannot be asked gives ``None`` ("unknown"), and then no queue is reported
as unconsumed rather than every queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cortex_school.delivery.merge import human_duration
from cortex_school.errors import INFRASTRUCTURE_ERROR
from cortex_school.metrics import RedisCollector, queue_depths
from cortex_school.models import Status, utcnow
from cortex_school.settings import Settings
from cortex_school.store import RedisStore
from cortex_school.waiting import GROUP_ORDER, GROUP_TITLES, Group, StuckLimits, Waiting, needs_person

Consumers = Callable[[], "dict[str, int] | None"]

# Groups that are alerts whatever their age: something broke, not a decision that waits.
_ALWAYS: dict[Group, str] = {Group.ROLLBACK_FAILED: "critical", Group.DEAD_LETTER: "warning",
                             Group.STUCK: "warning"}
DEFAULT_REVIEW_AFTER = 86400.0  # a day, as the chart's rule


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


@dataclass(frozen=True)
class Alert:
    """One thing that needs attention: how bad, what kind, what, since when (None: unknown)."""

    severity: Severity
    kind: str  # a waiting Group's value, "waiting_on_person", "dead_letters", "circuit_breaker", "queue_without_consumer"
    what: str
    since: datetime | None
    improvement_id: str | None = None
    queue: str | None = None

    def as_json(self) -> dict[str, object]:
        record = asdict(self)
        record["severity"] = self.severity.value
        record["since"] = self.since.isoformat() if self.since else None
        return record


@dataclass(frozen=True)
class BreakerLimits:
    """The circuit breaker (``CIRCUIT_BREAKER_ROLLBACKS`` within ``CIRCUIT_BREAKER_WINDOW``)."""

    rollbacks: int
    window_seconds: float


def exporter_limits(settings: Settings) -> tuple[StuckLimits, BreakerLimits]:
    """When work counts as stuck and when the breaker opens, from the settings."""
    return (StuckLimits(stuck_after=settings.stuck_after_seconds,
                        health_window=settings.services.health_check_duration),
            BreakerLimits(rollbacks=settings.approval.circuit_breaker_rollbacks,
                          window_seconds=settings.approval.circuit_breaker_window_seconds))


def queue_consumers(queues: Iterable[str], *, timeout: float = 1.0) -> dict[str, int] | None:
    """How many workers consume each queue now (every queue present, 0 when none does);
    None when the broker could not be asked."""
    from cortex_school.celery import app

    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # noqa: BLE001 - a broker that cannot be asked is "unknown", never "no consumer"
        return None
    counts = dict.fromkeys(queues, 0)
    for declared in replies.values():
        for queue in declared or []:
            name = queue.get("name") if isinstance(queue, dict) else None
            if name in counts:
                counts[name] += 1
    return counts


def breaker_open(store: RedisStore, limits: BreakerLimits) -> tuple[bool, int]:
    """Whether the circuit breaker is open now (more rollbacks than allowed in its window),
    and how many rollbacks the window holds."""
    recent = store.rollbacks_since(timedelta(seconds=limits.window_seconds))
    return recent > limits.rollbacks, recent


def collect_alerts(store: RedisStore, *, limits: StuckLimits, breaker: BreakerLimits,
                   queues: Iterable[str], consumers: dict[str, int] | None,
                   review_after: float = DEFAULT_REVIEW_AFTER, bridge_dead_letters: str | None = None,
                   groups: dict[Group, list[Waiting]] | None = None,
                   now: datetime | None = None) -> list[Alert]:
    """Everything that needs attention now, most severe first, then oldest first."""
    now = now or utcnow()
    found: list[Alert] = []
    groups = needs_person(store, limits=limits, now=now) if groups is None else groups
    for group, items in groups.items():
        for w in items:
            if group in _ALWAYS:
                severity, kind = Severity(_ALWAYS[group]), group.value
            elif w.reason.startswith(INFRASTRUCTURE_ERROR):
                severity, kind = Severity.WARNING, "infrastructure"
            elif w.age_seconds > review_after:
                severity, kind = Severity.WARNING, "waiting_on_person"
            else:
                continue
            found.append(Alert(severity=severity, kind=kind, improvement_id=w.improvement_id,
                               what=f"{GROUP_TITLES[group]} ({w.status}, {human_duration(w.age_seconds)}): "
                                    f"{w.reason}"[:500],
                               since=w.since or now - timedelta(seconds=w.age_seconds)))
    lists = [("improvements:dead_letter", "task message(s)")]
    if bridge_dead_letters:
        lists.append((bridge_dead_letters, "document(s) from the bridge"))
    for key, label in lists:
        count = store.dead_letter_count(key)
        if count:
            found.append(Alert(severity=Severity.WARNING, kind="dead_letters",
                               what=f"{count} {label} dead-lettered in {key}",
                               since=_oldest_at(store.dead_letters(key))))
    is_open, recent = breaker_open(store, breaker)
    paused = store.flags().get("auto_approve_none", False)
    if is_open or (paused and store.flag_reason("auto_approve_none")):
        why = store.flag_reason("auto_approve_none") or ""
        what = (f"circuit breaker open: {recent} rollback(s) within {human_duration(breaker.window_seconds)} "
                f"(limit {breaker.rollbacks})" if is_open else "auto-approval paused by the circuit breaker")
        if paused:
            what += f"; auto_approve_none is set{': ' + why if why else ''} (clear it with "\
                    "`cortex-school flags set auto_approve_none false`)"
        found.append(Alert(severity=Severity.CRITICAL, kind="circuit_breaker", what=what[:500],
                           since=_newest_rollback(store)))
    if consumers is not None:
        for queue, depth in queue_depths(store, queues).items():
            if depth and not consumers.get(queue, 0):
                found.append(Alert(severity=Severity.CRITICAL, kind="queue_without_consumer", queue=queue,
                                   what=f"queue {queue} holds {depth} message(s) and no worker consumes it "
                                        f"(start one: cortex-school worker --queues {queue})",
                                   since=None))
    rank = {Severity.CRITICAL: 0, Severity.WARNING: 1}
    return sorted(found, key=lambda a: (rank[a.severity], a.since or now, a.kind, a.improvement_id or ""))


def _oldest_at(records: list[dict[str, object]]) -> datetime | None:
    stamps = [_parse(r.get("at")) for r in records]
    known = [s for s in stamps if s is not None]
    return min(known) if known else None


def _newest_rollback(store: RedisStore) -> datetime | None:
    log = store.rollback_log(1)
    return _parse(log[0].get("timestamp")) if log else None


def _parse(raw: object) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=utcnow().tzinfo)


class AttentionCollector(Collector):
    """The gauges of work that waits (see the module docstring), read at scrape time."""

    def __init__(self, store: RedisStore, queues: Iterable[str], *, limits: StuckLimits,
                 breaker: BreakerLimits, consumers: Consumers | None = None) -> None:
        self.store = store
        self.queues = tuple(queues)
        self.limits = limits
        self.breaker = breaker
        self.consumers = consumers

    def collect(self) -> Iterator[Metric]:
        groups = needs_person(self.store, limits=self.limits)
        waiting = GaugeMetricFamily("cortex_school_waiting_on_person", "Improvements waiting on a "
                                    "person now, by why (the one current reason's group).", labels=["reason"])
        for group in GROUP_ORDER:
            waiting.add_metric([group.value], len(groups.get(group, [])))
        yield waiting
        reviews = [w.age_seconds for items in groups.values() for w in items
                   if w.status == Status.PENDING_REVIEW.value]
        yield GaugeMetricFamily("cortex_school_oldest_review_age_seconds", "How long the oldest "
                                "improvement in pending_review has waited (0 when none).",
                                value=max(reviews, default=0.0))
        stuck = [w for w in groups.get(Group.STUCK, []) if w.status != Status.PENDING_REVIEW.value]
        yield GaugeMetricFamily("cortex_school_stuck_improvements", "Improvements held in a busy "
                                "stage longer than it allows (STUCK_AFTER).", value=len(stuck))
        yield CounterMetricFamily("cortex_school_dead_letters", "Task messages dead-lettered because "
                                  "their worker died on every delivery.",
                                  value=max(self.store.stats().get("dead_lettered", 0.0),
                                            float(self.store.dead_letter_count())))
        is_open, _recent = breaker_open(self.store, self.breaker)
        yield GaugeMetricFamily("cortex_school_circuit_breaker_open", "1 while more rollbacks than "
                                "CIRCUIT_BREAKER_ROLLBACKS were logged within the window.",
                                value=1.0 if is_open else 0.0)
        counts = self.consumers() if self.consumers is not None else None
        if counts is not None:  # unknown is left out, never reported as 0
            family = GaugeMetricFamily("cortex_queue_consumers", "Workers consuming each Celery "
                                       "queue (inspect active_queues).", labels=["queue"])
            for queue in self.queues:
                family.add_metric([queue], counts.get(queue, 0))
            yield family


def registry_for(store: RedisStore, queues: Iterable[str], *, limits: StuckLimits,
                 breaker: BreakerLimits, consumers: Consumers | None = None) -> CollectorRegistry:
    """The exporter: the counters kept in Redis and the gauges of waiting work."""
    queues = tuple(queues)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(store, queues))
    registry.register(AttentionCollector(store, queues, limits=limits, breaker=breaker, consumers=consumers))
    return registry


def serve(store: RedisStore, queues: Iterable[str], port: int, addr: str = "0.0.0.0", *,
          limits: StuckLimits, breaker: BreakerLimits, consumers: Consumers | None = None) -> object:
    """Serve /metrics on a daemon thread; returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=registry_for(
        store, queues, limits=limits, breaker=breaker, consumers=consumers))
    return server

