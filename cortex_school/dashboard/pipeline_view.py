"""The pipeline page's numbers (``/pipeline``, and ``/api/pipeline`` the page polls): the
funnel, queue depths with their consumers, the workers seen, flags, the circuit breaker,
recent rollbacks and alerts.

Queue depths are the broker's Redis lists (kombu keeps one per queue and priority) read
through the store; consumers come from Celery's remote control
(``inspect().active_queues()``), asked with a short timeout and kept a few seconds
(:class:`Consumers`), so polling pages cost the workers one broadcast per ``ttl``. When
no worker answers, every queue has 0 consumers, and the page says that nobody answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cortex_school.models import utcnow
from cortex_school.store import OVERRIDE_FLAGS, RedisStore

# kombu's Redis transport: a queue's messages of priority 0, and of 3, 6, 9 (its default
# steps) in lists with these suffixes.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
BREAKER_FLAG = "auto_approve_none"  # what the circuit breaker sets when it opens


@dataclass(frozen=True)
class Seen:
    """What the workers said: queue → consumer count, the workers, when, or why not."""

    per_queue: dict[str, int] = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)
    error: str | None = None
    at: float = 0.0


def ask_celery(timeout: float) -> Seen:
    """One ``active_queues`` broadcast: every worker that answers within ``timeout``."""
    from kombu.exceptions import OperationalError

    from cortex_school.celery import app

    try:
        replies: dict[str, list[dict[str, Any]]] | None = app.control.inspect(timeout=timeout).active_queues()
    except (OSError, OperationalError) as exc:
        return Seen(error=f"the broker cannot be reached: {type(exc).__name__}", at=time.monotonic())
    per_queue: dict[str, int] = {}
    for queues in (replies or {}).values():
        for q in queues or []:
            name = q.get("name") if isinstance(q, dict) else None
            if isinstance(name, str):
                per_queue[name] = per_queue.get(name, 0) + 1
    workers = sorted(replies or {})
    return Seen(per_queue, workers, None if workers else f"no worker answered within {timeout:g}s",
                time.monotonic())


class Consumers:
    """:func:`ask_celery` at most once per ``ttl`` seconds (one caller asks, the rest wait)."""

    def __init__(self, ask: Callable[[], Seen] | None = None, *, ttl: float = 5.0, timeout: float = 1.0) -> None:
        self._ask = ask or (lambda: ask_celery(timeout))
        self._ttl = ttl
        self._lock = threading.Lock()
        self._seen: Seen | None = None

    def __call__(self) -> Seen:
        with self._lock:
            if self._seen is None or time.monotonic() - self._seen.at >= self._ttl:
                self._seen = self._ask()
            return self._seen


def snapshot(store: RedisStore, queues: Iterable[str], seen: Seen, *, breaker_limit: int,
             breaker_window: int) -> dict[str, Any]:
    """Everything the page shows, JSON-ready (the page and the API render the same dict)."""
    names = list(queues)
    lengths = store.list_lengths([q + s for q in names for s in PRIORITY_SUFFIXES])
    width = len(PRIORITY_SUFFIXES)
    rows = []
    for n, name in enumerate(names):
        depth = sum(lengths[n * width:(n + 1) * width])
        consumers = seen.per_queue.get(name, 0)
        rows.append({"name": name, "depth": depth, "consumers": consumers,
                     "starved": depth > 0 and consumers == 0})
    flags = store.flags()
    recent = store.rollbacks_since(timedelta(seconds=breaker_window))
    return {
        "as_of": utcnow().strftime("%Y-%m-%d %H:%M:%S UTC"),
        "funnel": {status.value: count for status, count in store.funnel().items()},
        "queues": rows,
        "starved": [r["name"] for r in rows if r["starved"]],
        "workers": seen.workers,
        "workers_error": seen.error,
        "flags": [{"name": name, "value": flags.get(name, False), "meaning": OVERRIDE_FLAGS[name],
                   "reason": store.flag_reason(name)} for name in OVERRIDE_FLAGS],
        "breaker": {"recent_rollbacks": recent, "limit": breaker_limit, "window_seconds": breaker_window,
                    "tripped": recent > breaker_limit, "paused": flags.get(BREAKER_FLAG, False),
                    "reason": store.flag_reason(BREAKER_FLAG)},
        "rollbacks": store.rollback_log(10),
        "alerts": store.alerts(10),
        "dead_letters": store.dead_letter_count(),
    }
