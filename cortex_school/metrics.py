"""Prometheus metrics read from Redis at scrape time.

Every worker process writes its counts to Redis (``improvements:stats``, the
transition counters and latency histograms the state machine's Lua script keeps,
``improvements:metrics:hist:*``), so the numbers are right under Celery's prefork pool
and identical whichever process serves them: ``cortex-school metrics`` or any worker
started with ``METRICS_PORT``. Nothing is counted in process memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cortex_school.delivery.merge import pending_merges
from cortex_school.models import Status
from cortex_school.settings import EXPERTS, WORKERS
from cortex_school.store import RedisStore

# Kombu's Redis transport keeps a queue's messages in the list named after the queue,
# plus one list per priority step.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

# Label values every series starts with (at 0), so a dashboard sees each from the start.
CONFLICT_TYPES = ("duplicate", "architectural", "dependency", "capacity")
IMPLEMENTATION_OUTCOMES = ("committed", "blocked", "conflict")
HEALTH_CHECKS = ("pods", "readiness", "metrics", "logs", "dependencies")
HEALTH_RESULTS = ("passed", "failed", "not_applicable", "insufficient_evidence")
ROLLBACK_REASONS = ("manual", "sync_timeout", *(f"health_{c}" for c in HEALTH_CHECKS), "other")


def queue_depths(store: RedisStore, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue (every priority step's list counted), in one
    round trip."""
    names = tuple(queues)
    lengths = store.list_lengths([q + suffix for q in names for suffix in _PRIORITY_SUFFIXES])
    step = len(_PRIORITY_SUFFIXES)
    return {queue: sum(lengths[n * step:(n + 1) * step]) for n, queue in enumerate(names)}


def _labelled(stats: dict[str, float], prefix: str, known: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], float]:
    """``prefix:a:b`` stats keys as {(a, b): value}, with every known label tuple present."""
    out: dict[tuple[str, ...], float] = {k: 0.0 for k in known}
    for key, value in stats.items():
        if key.startswith(prefix + ":"):
            out[tuple(key[len(prefix) + 1:].split(":"))] = value
    return out


# Every name the design lists (test_metrics checks each is exported).
DESIGN_METRICS: tuple[str, ...] = (
    "cortex_school_improvements_total", "cortex_school_processing_rate",
    "cortex_school_auto_approval_rate", "cortex_school_rollback_rate",
    "cortex_moe_routing_total", "cortex_moe_llmd_requests_total",
    "cortex_moe_llmd_latency_seconds", "cortex_rag_validations_total",
    "cortex_rag_conflicts_total", "cortex_worker_implementations_total",
    "cortex_worker_git_commits_total", "cortex_worker_git_push_failures_total",
    "cortex_health_checks_total", "cortex_rollbacks_total", "cortex_rollback_duration_seconds",
)


def _histogram(name: str, doc: str, raw: dict[str, str], labels: dict[str, str] | None = None,
               family: HistogramMetricFamily | None = None) -> HistogramMetricFamily:
    family = family or HistogramMetricFamily(name, doc, labels=list(labels or {}))
    buckets = sorted(((float(k), int(v)) for k, v in raw.items() if k not in ("sum", "+Inf")),
                     key=lambda kv: kv[0])
    total = int(raw.get("+Inf", 0))
    family.add_metric(list((labels or {}).values()),
                      [(f"{le:g}", count) for le, count in buckets] + [("+Inf", total)],
                      float(raw.get("sum", 0.0)))
    return family


class RedisCollector(Collector):
    def __init__(self, store: RedisStore, queues: Iterable[str]) -> None:
        self.store = store
        self.queues = tuple(queues)

    def collect(self) -> Iterator[Metric]:
        store = self.store
        stats = store.stats()
        transitions = store.transition_counts()

        entered = CounterMetricFamily("cortex_school_improvements", "Improvements that entered each "
                                      "stage (status), since the state store began.", labels=["stage"])
        for status in Status:
            entered.add_metric([status.value], transitions.get(status.value, 0))
        yield entered

        current = GaugeMetricFamily("cortex_school_improvements_in_stage",
                                    "Improvements in each stage now (the funnel).", labels=["stage"])
        for status, count in store.funnel().items():
            current.add_metric([status.value], count)
        yield current

        recent = store.recent_transitions(5, time.time())
        rate = GaugeMetricFamily("cortex_school_processing_rate", "Improvements entering each "
                                 "stage per minute, over the last 5 minutes.", labels=["stage"])
        for status in Status:
            rate.add_metric([status.value], recent.get(status.value, 0) / 5.0)
        yield rate

        approved, review = stats.get("gate:approved", 0.0), stats.get("gate:review", 0.0)
        yield GaugeMetricFamily("cortex_school_auto_approval_rate", "Share of the gate's decisions "
                                "that auto-approved.", value=approved / (approved + review)
                                if approved + review else 0.0)
        yield GaugeMetricFamily("cortex_school_rollback_rate", "Rollbacks logged in the last hour.",
                                value=float(self.store.rollbacks_since(timedelta(hours=1))))

        latency = HistogramMetricFamily("cortex_school_stage_latency_seconds",
                                        "Time an improvement spent in a stage before leaving it.",
                                        labels=["stage"])
        for status in Status:
            raw = store.stage_latency(status.value)
            if raw:
                _histogram("", "", raw, {"stage": status.value}, latency)
        yield latency

        routing = CounterMetricFamily("cortex_moe_routing", "Improvements routed to each expert.",
                                      labels=["expert"])
        for labels, value in _labelled(stats, "routed", [(e,) for e in EXPERTS]).items():
            routing.add_metric(list(labels), value)
        yield routing
        yield CounterMetricFamily("cortex_moe_llmd_requests", "Requests to the LLM-D endpoint.",
                                  value=stats.get("backend:llmd:requests", 0.0))
        yield _histogram("cortex_moe_llmd_latency_seconds", "LLM-D evaluation latency.",
                         store.histogram("llm_latency:llmd"))
        requests = CounterMetricFamily("cortex_moe_llm_requests", "Requests per expert backend.",
                                       labels=["backend"])
        for key, value in stats.items():
            if key.startswith("backend:") and key.endswith(":requests"):
                requests.add_metric([key.split(":")[1]], value)
        yield requests
        yield CounterMetricFamily("cortex_moe_cache_hits", "Expert evaluations served from the cache.",
                                  value=stats.get("expert_cache_hits", 0.0))

        validations = CounterMetricFamily("cortex_rag_validations", "Validation runs by result.",
                                          labels=["result"])
        for result in ("pass", "conflict"):
            validations.add_metric([result], stats.get(f"rag_validations:{result}", 0.0))
        yield validations
        conflicts = CounterMetricFamily("cortex_rag_conflicts", "Conflicts found, by check.",
                                        labels=["type"])
        for labels, value in _labelled(stats, "rag_conflicts", [(t,) for t in CONFLICT_TYPES]).items():
            conflicts.add_metric(list(labels), value)
        yield conflicts

        implementations = CounterMetricFamily("cortex_worker_implementations", "Implementation "
                                              "runs by worker and outcome.", labels=["type", "outcome"])
        known = [(w, o) for w in WORKERS for o in IMPLEMENTATION_OUTCOMES]
        for labels, value in _labelled(stats, "implementations", known).items():
            implementations.add_metric(list(labels), value)
        yield implementations
        yield CounterMetricFamily("cortex_worker_git_commits", "Improvement commits pushed.",
                                  value=stats.get("git_commits", 0.0))
        yield CounterMetricFamily("cortex_worker_git_push_failures", "Pushes rejected or failed.",
                                  value=stats.get("git_push_failures", 0.0))

        checks = CounterMetricFamily("cortex_health_checks", "Health check results.",
                                     labels=["check", "result"])
        known = [(c, r) for c in HEALTH_CHECKS for r in HEALTH_RESULTS]
        for labels, value in _labelled(stats, "health_check", known).items():
            checks.add_metric(list(labels), value)
        yield checks
        rollbacks = CounterMetricFamily("cortex_rollbacks", "Rollbacks by reason.", labels=["reason"])
        for labels, value in _labelled(stats, "rollbacks_by_reason", [(r,) for r in ROLLBACK_REASONS]).items():
            rollbacks.add_metric(list(labels), value)
        yield rollbacks
        yield _histogram("cortex_rollback_duration_seconds", "From revert to the system checked "
                         "healthy again.", store.histogram("rollback_duration"))

        depth = GaugeMetricFamily("cortex_queue_depth", "Messages waiting in each Celery queue.",
                                  labels=["queue"])
        for queue, length in queue_depths(store, self.queues).items():
            depth.add_metric([queue], length)
        yield depth
        yield GaugeMetricFamily("cortex_school_rollback_log_length", "Entries in the rollback log.",
                                value=store.rollback_log_length())

        merges = pending_merges(store)
        yield GaugeMetricFamily("cortex_school_merge_pending", "Branch-mode commits whose branch "
                                "waits for a person to merge it.", value=len(merges))
        yield GaugeMetricFamily("cortex_school_merge_pending_oldest_seconds", "How long the oldest "
                                "branch has waited for a merge (0 when none waits).",
                                value=max((m.age_seconds for m in merges), default=0.0))


def registry_for(store: RedisStore, queues: Iterable[str]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(store, queues))
    return registry


def serve(store: RedisStore, queues: Iterable[str], port: int, addr: str = "0.0.0.0") -> object:
    """Serve /metrics on a daemon thread; returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=registry_for(store, queues))
    return server
