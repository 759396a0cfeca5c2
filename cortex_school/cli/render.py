"""Rich rendering shared by the commands and the demo: the funnel, decision tables,
ingest reports."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cortex_school.delivery.merge import PendingMerge, human_duration
from cortex_school.intake.ingest import IngestReport
from cortex_school.models import Improvement
from cortex_school.store import (
    RedisStore,
)
from cortex_school.waiting import Waiting

if TYPE_CHECKING:
    from cortex_school.validation.rag.index import SyncReport

console = Console(highlight=False)


def _rejected_part(location: str) -> str:
    """The proposal a rejection is about (``improvements.passive[2]``), else the whole video."""
    match = re.match(r"improvements\.\w+\[\d+\]", location)
    return match.group(0) if match else "video"


def print_report(report: IngestReport) -> None:
    rejected_items = {_rejected_part(r.location) for r in report.rejections}
    head = f"[bold]{escape(report.source)}[/]: accepted {report.accepted}"
    if report.created:
        head += f" ({len(report.created)} new"
        head += f", {len(report.existing)} already known)" if report.existing else ")"
    elif report.existing:
        head += " (all already known: nothing to do)"
    if report.resumed:
        head += f", resumed {len(report.resumed)} in flight"
    if report.rejections:
        head += f", [red]rejected {len(rejected_items)} part(s)[/]"
    console.print(head)
    for rejection in report.rejections:
        # Rejections quote hostile input: never let it be read as Rich markup.
        console.print(f"  [red]✗[/] {escape(rejection.location)}: {escape(rejection.reason)}", soft_wrap=True)


def funnel_table(store: RedisStore) -> Table:
    counts = store.funnel()
    table = Table(title="Pipeline funnel (improvements per status)")
    table.add_column("stage")
    table.add_column("count", justify="right")
    for status, count in counts.items():
        table.add_row(status.value, str(count))
    table.add_row("[dim]rejected input records[/]", str(store.rejection_count()))
    return table


def decisions_table(improvements: list[Improvement], title: str,
                    reasons: Mapping[str, Waiting] | None = None) -> Table:
    """One row per improvement with its current reason (:mod:`cortex_school.waiting`), not
    the gate's decision, which goes stale once a later stage sends it back to a person."""
    table = Table(title=title, show_lines=False)
    table.add_column("id", no_wrap=True)
    for col in ("video", "category/type", "expert", "rel.", "status", "waiting", "reason"):
        table.add_column(col, overflow="fold")
    reasons = reasons or {}
    for imp in sorted(improvements, key=lambda i: (i.status.value, -i.relevance, i.id)):
        current = reasons.get(imp.id)
        if current is not None:
            reason = current.reason
            waiting = f"{current.group.value} {human_duration(current.age_seconds)}" if current.group else "-"
        else:
            reason = imp.decision.reason if imp.decision else ""
            waiting = "-"
        table.add_row(
            imp.id, imp.video_id, f"{imp.category}/{imp.type.value}", imp.expert or "-",
            f"{imp.relevance:.2f}", imp.status.value, waiting, escape(reason[:400]),
        )
    return table


def merge_pending_table(merges: list[PendingMerge]) -> Table:
    """Branches waiting for a person to merge them, oldest first, with how long they have
    waited and their pull request (or why it could not be opened)."""
    table = Table(title=f"merge pending: {len(merges)} branch(es) waiting for a person to merge them",
                  box=None, pad_edge=False, title_justify="left")
    # One line per branch: id, branch and age whole; title and pull request cut to fit.
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("branch", no_wrap=True)
    table.add_column("waiting for", no_wrap=True)
    table.add_column("title", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("pull request", no_wrap=True, overflow="ellipsis", ratio=1)
    for m in merges:
        if m.pull_request_url:
            pull = escape(m.pull_request_url)
        elif m.pull_request_error:
            pull = f"[red]not opened: {escape(m.pull_request_error[:200])}[/]"
        else:
            pull = "-"
        table.add_row(m.improvement_id, escape(m.branch), human_duration(m.age_seconds),
                      escape(m.title[:80]), pull)
    return table


def _print_sync(report: SyncReport) -> None:
    console.print(f"{report.corpus}: {report.total} chunks, {report.embedded} embedded, "
                  f"{report.unchanged} unchanged, {report.deleted} deleted")
    for problem in report.problems:
        console.print(f"  [yellow]! {problem}[/]")


def short_age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``: one unit, at most four characters, for a column."""
    total = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if total >= size:
            return f"{total // size}{unit}"
    return f"{total}s"


def when(stamp: datetime | None, now: datetime | None = None) -> str:
    """``2026-12-02 16:42 UTC (3h ago)``: a time for people, never an epoch float."""
    if stamp is None:
        return "unknown"
    now = now or datetime.now(UTC)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    ago = (now - stamp).total_seconds()
    rel = f"{short_age(ago)} ago" if ago >= 0 else f"in {short_age(-ago)}"
    return f"{stamp.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({rel})"


def one_line_table(rows: list[tuple[str, float | None, str, str]], title: str,
                   middle: str = "stage", width: int | None = None) -> Text:
    """One line per improvement at any width (``width``: the console's): the id whole
    (never wrapped), its age, ``middle`` (the stage, or the group it waits in) and as much
    of the reason as fits, cut with an ellipsis. Plain text, not escaped markup: hostile
    reasons print literally."""
    width = max(40, width or console.width)
    mid = min(15, max([len(middle)] + [len(r[2]) for r in rows]))
    lines = [title, f"{'id':<16}  {'age':>4}  {middle:<{mid}}  reason"]
    for iid, age, what, reason in rows:
        head = f"{iid:<16}  {short_age(age) if age is not None else '-':>4}  {_cut(what, mid):<{mid}}  "
        lines.append(head + _cut(" ".join(reason.split()), width - len(head)))
    return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[:max(0, room - 1)] + "…"
