"""Consume the video-learning service's Redis list reliably.

The service LPUSHes one JSON document per video onto ``youtube:improvements``. Each
document is moved atomically (BLMOVE) to ``youtube:improvements:processing`` and
removed from there only after ingestion stored it (or recorded why it was
rejected). A crash between the two leaves it in the processing list, which the
next start drains first; ingestion is idempotent, so nothing is lost or doubled.
"""

from __future__ import annotations

import threading
from typing import Callable

import redis

from cortex_school.ingest import IngestReport

Ingest = Callable[[str, str], IngestReport]


def processing_list(source_list: str) -> str:
    return f"{source_list}:processing"


def run_bridge(
    client: redis.Redis,
    *,
    source_list: str,
    ingest: Ingest,
    block_seconds: float = 5.0,
    once: bool = False,
    stop: threading.Event | None = None,
    on_report: Callable[[IngestReport], None] | None = None,
) -> int:
    """Ingest documents until ``stop`` is set (or the list is empty, with ``once``).

    Returns how many documents were handled.
    """
    inflight = processing_list(source_list)
    handled = 0

    def handle(raw: str) -> None:
        nonlocal handled
        report = ingest(raw, f"redis:{source_list}")
        client.lrem(inflight, 1, raw)
        handled += 1
        if on_report:
            on_report(report)

    # Documents a previous run took but did not finish: oldest first.
    for raw in reversed(client.lrange(inflight, 0, -1)):
        handle(raw)

    while not (stop and stop.is_set()):
        raw = client.blmove(source_list, inflight, block_seconds, "RIGHT", "LEFT")
        if raw is None:
            if once:
                break
            continue
        handle(raw)
    return handled
