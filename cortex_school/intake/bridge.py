"""Consume the video-learning service's Redis list reliably.

The service LPUSHes one JSON document per video onto ``youtube:improvements``. Each
document is moved atomically (BLMOVE) to ``youtube:improvements:processing`` and
removed from there only after ingestion stored it (or recorded why it was
rejected). A crash between the two leaves it in the processing list, which the
next start drains first; ingestion is idempotent, so nothing is lost or doubled.

A document the bridge cannot store never stops it: one that cannot be parsed, or
that makes ingestion raise, is moved to ``youtube:improvements:dead_letter`` with
the reason (a JSON record: the first 2000 characters of the document, its full
length, the reason, the error type, when) and the bridge goes on. Only errors of
Redis or the network itself stop it (the document stays in the processing list).
Every start of a document is counted (hash ``youtube:improvements:processing:starts``),
so one that kills the bridge outright is dead-lettered instead of being taken a
third time: a poisoned processing list cannot make every start crash.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any, cast

import redis

from cortex_school.intake.ingest import IngestReport
from cortex_school.models import utcnow
from cortex_school.store import STATS_KEY

Ingest = Callable[[str, str], IngestReport]

# Not the document's fault: the bridge stops and the document waits in the processing list.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)
EXCERPT_CHARS = 2000
REASON_CHARS = 1000
# A document is taken at most this often; one still unfinished after that is dead-lettered.
MAX_STARTS = 2
# Newest dead-letter records kept (each at most a few KB).
DEAD_LETTER_KEEP = 10_000


def processing_list(source_list: str) -> str:
    return f"{source_list}:processing"


def dead_letter_list(source_list: str) -> str:
    return f"{source_list}:dead_letter"


def starts_hash(source_list: str) -> str:
    return f"{processing_list(source_list)}:starts"


def _digest(raw: str | bytes) -> str:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return hashlib.sha256(data).hexdigest()


def run_bridge(
    client: redis.Redis,
    *,
    source_list: str,
    ingest: Ingest,
    block_seconds: float = 5.0,
    once: bool = False,
    stop: threading.Event | None = None,
    on_report: Callable[[IngestReport], None] | None = None,
    on_dead_letter: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Ingest documents until ``stop`` is set (or the list is empty, with ``once``).

    Returns how many documents were handled (stored, rejected or dead-lettered).
    """
    inflight = processing_list(source_list)
    starts_key = starts_hash(source_list)
    source = f"redis:{source_list}"
    handled = 0

    def finish(raw: str, digest: str, record: dict[str, Any] | None = None) -> None:
        pipe = client.pipeline(transaction=True)
        if record is not None:
            pipe.lpush(dead_letter_list(source_list), json.dumps(record, ensure_ascii=False))
            pipe.ltrim(dead_letter_list(source_list), 0, DEAD_LETTER_KEEP - 1)
            pipe.hincrby(STATS_KEY, "bridge_dead_lettered", 1)
        pipe.lrem(inflight, 1, raw)
        pipe.hdel(starts_key, digest)
        pipe.execute()

    def dead_letter(raw: str, digest: str, reason: str, error: str, starts: int) -> None:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        record = {
            "document": text[:EXCERPT_CHARS],
            "length": len(raw),
            "reason": reason[:REASON_CHARS],
            "error": error,
            "at": utcnow().isoformat(),
            "source": source,
            "starts": starts,
        }
        finish(raw, digest, record)
        if on_dead_letter:
            on_dead_letter(record)

    def handle(raw: str) -> None:
        nonlocal handled
        handled += 1
        digest = _digest(raw)
        starts = int(client.hincrby(starts_key, digest, 1))
        if starts > MAX_STARTS:
            dead_letter(raw, digest, f"taken {starts - 1} times without being finished (the "
                        "bridge stopped each time); not ingested again", "Unfinished", starts)
            return
        try:
            report = ingest(raw, source)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason, never lost
            dead_letter(raw, digest, f"ingestion raised {type(exc).__name__}: {exc}",
                        type(exc).__name__, starts)
            return
        if report.unreadable is not None:  # recorded as a rejection too
            dead_letter(raw, digest, report.unreadable.reason, report.unreadable.kind, starts)
        else:
            finish(raw, digest)
        if on_report:
            on_report(report)

    # Documents a previous run took but did not finish: oldest first. (Replies are str: the
    # client is opened with decode_responses=True, see store.connect.)
    for unfinished in reversed(cast("list[str]", client.lrange(inflight, 0, -1))):
        handle(unfinished)

    while not (stop and stop.is_set()):
        # redis-py types BLMOVE's timeout as int; the server takes fractional seconds.
        raw = cast("str | None", client.blmove(source_list, inflight, cast(int, block_seconds),
                                               "RIGHT", "LEFT"))
        if raw is None:
            if once:
                break
            continue
        handle(raw)
    return handled
