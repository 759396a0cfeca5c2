"""``cortex-school``: ingest, inspect, review and run the pipeline."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cortex_school.cli.render import (
    _print_sync,
    funnel_table,
    merge_pending_table,
    one_line_table,
    print_report,
    short_age,
    when,
)
from cortex_school.intake.ingest import ingest_document, iter_sources
from cortex_school.models import Improvement, Rejection, Status
from cortex_school.settings import get_settings
from cortex_school.store import (
    CONNECTION_ERRORS,
    OVERRIDE_FLAGS,
    RedisStore,
    TransitionRefused,
    connect,
    ensure_valid_id,
)
from cortex_school.waiting import Group, StuckLimits, Waiting, current_reason, current_reasons, needs_person

if TYPE_CHECKING:
    from cortex_school.validation.rag.index import VectorIndex

app = typer.Typer(help="Cortex Online School: improvement proposals → reviewed platform changes.",
                  no_args_is_help=True, add_completion=False)
index_app = typer.Typer(help="Build the RAG corpora (incremental: unchanged chunks are not re-embedded).",
                        no_args_is_help=True)
review_app = typer.Typer(help="Human review of improvements waiting in pending_review.",
                         no_args_is_help=True)
flags_app = typer.Typer(help="Override flags of the approval gate.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(review_app, name="review")
policy_app = typer.Typer(help="Schema and policy checks of Kubernetes manifests.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(flags_app, name="flags")
platform_app = typer.Typer(help="The platform model: what the GitOps repository runs.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _store() -> RedisStore:
    settings = get_settings()
    store = RedisStore.from_url(settings.redis.url)
    try:
        store.ping()
    except CONNECTION_ERRORS as exc:
        err.print(f"[red]Redis at {settings.redis.host}:{settings.redis.port} is not reachable: {exc}[/]")
        raise typer.Exit(2) from None
    return store


def _limits() -> StuckLimits:
    settings = get_settings()
    return StuckLimits(stuck_after=settings.stuck_after_seconds,
                       health_window=settings.services.health_check_duration)


def _enqueue(improvement: Improvement) -> None:
    from cortex_school.pipeline import enqueue

    enqueue(improvement)


@app.command()
def ingest(
    paths: list[str] = typer.Argument(..., help="Files, directories of *.json, or - for stdin."),
    no_enqueue: bool = typer.Option(False, help="Store only; do not start the pipeline."),
) -> None:
    """Validate and store proposals, then start their pipeline.

    Exit status 1 when a document could not be parsed at all (too large, not UTF-8, too
    deeply nested, malformed) or its ingestion failed; every other source is still ingested.
    """
    settings = get_settings()
    store = _store()
    enqueue = (lambda _imp: None) if no_enqueue else _enqueue
    totals = [0, 0]
    refused: list[str] = []  # sources refused as a whole
    for source, raw, problem in iter_sources(paths, max_bytes=settings.ingest.max_file_bytes):
        if raw is None:
            rejection = Rejection(source=source, location="path", reason=problem or "unreadable")
            store.record_rejection(rejection)
            console.print(f"[bold]{escape(source)}[/]: [red]✗ {escape(rejection.reason)}[/]")
            totals[1] += 1
            continue
        try:
            report = ingest_document(store, raw, source, caps=settings.ingest, enqueue=enqueue)
        except CONNECTION_ERRORS as exc:
            err.print(f"[red]{escape(source)}: Redis is not reachable: {escape(str(exc))}[/]")
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - recorded as a rejection; a bug must not stop the other files
            reason = f"ingestion failed: {type(exc).__name__}: {str(exc)[:300]}"
            store.record_rejection(Rejection(source=source, location="document", reason=reason))
            console.print(f"[bold]{escape(source)}[/]: [red]✗ {escape(reason)}[/]")
            totals[1] += 1
            refused.append(source)
            continue
        print_report(report)
        totals[0] += report.accepted
        totals[1] += len(report.rejections)
        if report.unreadable is not None:
            refused.append(source)
    console.print(f"[bold]{totals[0]} proposal(s) accepted, {totals[1]} rejection(s) recorded[/]")
    if refused:
        err.print(f"[red]{len(refused)} document(s) refused as a whole: "
                  f"{escape(', '.join(refused[:20]))}[/]")
        raise typer.Exit(1)


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="The funnel, flags, stuck work, pending "
                                 "merges and dead-letter counts as one JSON object."),
) -> None:
    """The funnel: how many improvements are in each stage, what is stuck, and which
    branches wait for a person to merge them (and for how long)."""
    store = _store()
    from cortex_school.sweeper import find_stuck

    settings = get_settings()
    stuck = find_stuck(store, stuck_after=settings.stuck_after_seconds,
                       health_window=settings.services.health_check_duration)
    if as_json:
        from cortex_school.delivery.merge import pending_merges
        from cortex_school.intake.bridge import dead_letter_list

        print(json.dumps({
            "funnel": {status.value: count for status, count in store.funnel().items()},
            "rejected_input": store.rejection_count(),
            "flags": store.flags(),
            "stuck": [{"id": s.improvement_id, "status": s.status.value, "seconds": round(s.age_seconds, 1)}
                      for s in stuck],
            "merge_pending": [{"id": m.improvement_id, "branch": m.branch, "seconds": round(m.age_seconds, 1),
                               "pull_request_url": m.pull_request_url} for m in pending_merges(store)],
            "dead_letters": store.dead_letter_count(),
            "bridge_dead_letters": store.dead_letter_count(dead_letter_list(settings.ingest.bridge_list)),
        }, ensure_ascii=False))
        return
    console.print(funnel_table(store))
    flags = {k: v for k, v in store.flags().items() if v}
    if flags:
        console.print(f"[yellow]override flags set: {', '.join(flags)}[/]")
    if stuck:
        table = Table(title=f"stuck: {len(stuck)} improvement(s) longer than their stage allows")
        for col in ("id", "status", "for", "sweeps so far"):
            table.add_column(col)
        for s in stuck[:50]:
            table.add_row(s.improvement_id, s.status.value, short_age(s.age_seconds),
                          store.field(s.improvement_id, f"stuck_resumes:{s.status.value}") or "0")
        console.print(table)
    _print_merge_pending(store)
    dead = store.dead_letter_count()
    if dead:
        console.print(f"[red]{dead} dead-lettered task(s) in improvements:dead_letter[/]")
    from cortex_school.intake.bridge import dead_letter_list

    bridge_dead = dead_letter_list(settings.ingest.bridge_list)
    dead = store.dead_letter_count(bridge_dead)
    if dead:
        console.print(f"[red]{dead} dead-lettered document(s) in {escape(bridge_dead)}[/]")


@app.command()
def sweep() -> None:
    """Find stuck improvements now and re-enqueue them (what the beat task does every minute)."""
    from cortex_school.tasks.sweep import sweep_stuck

    console.print(sweep_stuck.run())


@app.command()
def alerts(
    older_than: float = typer.Option(86400.0, "--older-than", help="Seconds an improvement may wait "
                                     "on a person (review, policy findings, a merge) before it is an "
                                     "alert; stuck work, dead letters and failed rollbacks always are."),
    inspect_timeout: float = typer.Option(1.0, help="Seconds to wait for the workers to say which "
                                          "queues they consume."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of alerts (severity, kind, what, "
                                 "since, improvement_id, queue)."),
) -> None:
    """Everything that needs attention now: improvements waiting on a person longer than
    --older-than, stuck work, dead letters, failed rollbacks, an open circuit breaker, and
    queues holding work that no worker consumes. Most severe first.

    Exit status 0 when nothing needs attention, 1 when anything does, 2 when Redis is not
    reachable."""
    from celeryconfig import ALL_QUEUES
    from cortex_school.alerts import collect_alerts, exporter_limits, queue_consumers
    from cortex_school.intake.bridge import dead_letter_list

    settings = get_settings()
    store = _store()
    limits, breaker = exporter_limits(settings)
    consumers = queue_consumers(ALL_QUEUES, timeout=inspect_timeout)
    found = collect_alerts(store, limits=limits, breaker=breaker, queues=ALL_QUEUES, consumers=consumers,
                           review_after=older_than,
                           bridge_dead_letters=dead_letter_list(settings.ingest.bridge_list))
    if as_json:
        print(json.dumps([a.as_json() for a in found], ensure_ascii=False))
    else:
        if consumers is None:
            err.print("[yellow]the broker could not be asked which queues are consumed: queues not checked[/]")
        if not found:
            console.print("nothing needs attention")
        for a in found:
            subject = a.improvement_id or a.queue or "-"
            since = when(a.since) if a.since else "since: unknown"
            colour = "red" if a.severity == "critical" else "yellow"
            console.print(f"[{colour}]{a.severity.value.upper():<8}[/] {a.kind} {subject}  [dim]{since}[/]")
            console.print(f"  {escape(a.what)}")
    raise typer.Exit(1 if found else 0)


@app.command("list")
def list_(
    stage: str | None = typer.Option(None, "--stage", "-s", help="A status, e.g. pending_review; "
                                     "required without --json."),
    limit: int = typer.Option(100, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array of objects, for scripts."),
) -> None:
    """Improvements in one stage (with --json: in every stage unless --stage is given)."""
    wanted: list[Status]
    if stage is None:
        if not as_json:
            err.print("[red]--stage is required (or use --json for every stage)[/]")
            raise typer.Exit(2)
        wanted = list(Status)
    else:
        try:
            wanted = [Status(stage)]
        except ValueError:
            err.print(f"[red]unknown stage {stage!r}; one of: {', '.join(s.value for s in Status)}[/]")
            raise typer.Exit(2) from None
    store = _store()
    ids = sorted(i for w in wanted for i in store.ids_with_status(w))[:limit]
    items = store.many(ids)
    reasons = current_reasons(store, [imp.id for imp in items], limits=_limits())
    if as_json:
        print(json.dumps([list_row(imp, reasons.get(imp.id)) for imp in items], ensure_ascii=False))
        return
    rows: list[tuple[str, float | None, str, str]] = []
    for imp in sorted(items, key=lambda i: (i.status.value, -i.relevance, i.id)):
        current = reasons.get(imp.id)
        reason = current.reason if current else (imp.decision.reason if imp.decision else "")
        age = current.age_seconds if current and current.since else None
        if current is not None and current.group is not None:
            reason = f"{current.group.value}: {reason}"
        rows.append((imp.id, age, imp.status.value, reason))
    console.print(one_line_table(rows, f"{wanted[0].value}: {len(ids)} shown"))


def show_record(store: RedisStore, improvement_id: str, fields: dict[str, str]) -> dict[str, object]:
    """What `show --json` prints: the raw fields (nested records parsed), the findings as a
    list of objects, every expert's assessment, and the timeline."""
    parsed: dict[str, object] = {}
    for key, value in fields.items():
        if value[:1] in ("{", "["):
            try:
                parsed[key] = json.loads(value)
                continue
            except ValueError:
                pass
        parsed[key] = value
    validation = parsed.get("validation")
    findings = validation.get("findings", []) if isinstance(validation, dict) else []
    return {"id": improvement_id, "status": fields.get("status"), "fields": parsed,
            "findings": [{"check": f.get("check"), "conflict": f.get("conflict"), "reason": f.get("reason"),
                          "evidence": f.get("evidence", []), "related_id": f.get("related_id")}
                         for f in findings if isinstance(f, dict)],
            "assessments": {name: a.model_dump(mode="json") for name, a in store.assessments(improvement_id).items()},
            "timeline": [e.model_dump(mode="json") for e in store.timeline(improvement_id)]}


def list_row(imp: Improvement, current: Waiting | None) -> dict[str, object]:
    """One improvement as a row for scripts: what it is, where it is and why (the current
    reason, see :mod:`cortex_school.waiting`), and what it waits on a person for."""
    return {"id": imp.id, "status": imp.status.value, "title": imp.title, "category": imp.category,
            "type": imp.type.value, "expert": imp.expert, "relevance": imp.relevance,
            "video_id": imp.video_id,
            "reason": current.reason if current else (imp.decision.reason if imp.decision else None),
            "waiting": current.group.value if current and current.group else None,
            "waiting_seconds": round(current.age_seconds, 1) if current and current.group else None,
            "conflicts": [f.check for f in (imp.validation.conflicts if imp.validation else [])],
            "updated_at": imp.updated_at.isoformat()}


@app.command()
def show(
    improvement_id: str,
    as_json: bool = typer.Option(False, "--json", help="Every field, the validation findings "
                                 "(check, conflict, reason, evidence), assessments and timeline as JSON."),
    all_fields: bool = typer.Option(False, "--all", help="Also every other stored field, in full."),
) -> None:
    """One improvement in sections: summary (where it is and the one current reason), the
    findings (validation and policy), the plan, the timeline; times for people."""
    store = _store()
    fields = store.raw_fields(improvement_id)
    if not fields:
        err.print(f"[red]no improvement {improvement_id!r}[/]")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(show_record(store, improvement_id, fields), ensure_ascii=False, default=str))
        return
    record = show_record(store, improvement_id, fields)
    parsed = cast("dict[str, Any]", record["fields"])
    current = current_reason(store, improvement_id, limits=_limits())
    shown: set[str] = set()

    def field(name: str) -> str:
        shown.add(name)
        value = parsed.get(name)
        return "" if value is None else str(value)

    console.rule(f"[bold]{improvement_id}[/]", align="left")
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column("what", style="bold", no_wrap=True)
    summary.add_column("value", overflow="fold")
    summary.add_row("title", escape(field("title")))
    status_line = field("status")
    if current is not None:
        status_line += f" since {when(current.since)}"
    summary.add_row("status", status_line)
    if current is not None and current.group is not None:
        summary.add_row("waits on", f"a person: {current.group.value} for {short_age(current.age_seconds)}")
    summary.add_row("reason", escape(current.reason if current else field("review_reason")))
    summary.add_row("kind", f"{field('category')}/{field('type')}, relevance {field('relevance')}, "
                    f"expert {field('expert') or '-'}")
    summary.add_row("video", escape(field("video_id")))
    for name in ("git_commit", "git_branch", "pull_request_url", "last_error", "failure_reason",
                 "rollback_status"):
        if parsed.get(name):
            summary.add_row(name.replace("_", " "), escape(field(name)[:500]))
    description = field("description")
    summary.add_row("description", escape(description[:600] + ("…" if len(description) > 600 else "")))
    console.print(summary)

    findings = cast("list[dict[str, Any]]", record["findings"])
    timeline_entries = cast("list[object]", record["timeline"])
    violations = parsed.get("policy_violations") or []
    shown.update({"validation", "policy_violations"})
    console.rule(f"findings ({len(findings)} validation, {len(violations)} policy)", align="left")
    for f in findings:
        mark = "[red]✗[/]" if f["conflict"] else "·"
        console.print(f"{mark} {escape(str(f['check']))}: {escape(str(f['reason'])[:400])}")
        for ev in (f.get("evidence") or [])[:5]:
            console.print(f"    {escape(str(ev)[:300])}")
    for v in violations if isinstance(violations, list) else []:
        if isinstance(v, dict):
            console.print(f"[red]✗[/] {escape(str(v.get('rule')))} {escape(str(v.get('object')))}"
                          f"{' at ' + escape(str(v['path'])) if v.get('path') else ''}: "
                          f"{escape(str(v.get('detail'))[:300])} ({v.get('action', 'refuse')})")

    plan = parsed.get("plan")
    shown.add("plan")
    console.rule("plan", align="left")
    if isinstance(plan, dict):
        resources = plan.get("resources") or []
        console.print(f"{len(resources)} resource(s) by {escape(str(plan.get('planner', '?')))}")
        for r in resources if isinstance(resources, list) else []:
            if isinstance(r, dict):
                console.print(f"  {escape(str(r.get('kind')))} {escape(str(r.get('namespace') or '-'))}/"
                              f"{escape(str(r.get('name')))}")
        for step in plan.get("manual_steps") or []:
            console.print(f"  manual: {escape(str(step)[:300])}")
    else:
        console.print("[dim]no plan yet[/]")

    timeline = Table(title=f"timeline ({len(timeline_entries)} entries)", title_justify="left",
                     box=None, pad_edge=False)
    for col, wrap in (("at", False), ("from → to", False), ("actor", False), ("reason", True)):
        timeline.add_column(col, no_wrap=not wrap, overflow="fold")
    for entry in store.timeline(improvement_id):
        timeline.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", f"{entry.from_status or '-'} → {entry.to_status}",
                         escape(entry.actor), escape(entry.reason[:500]))
    console.print(timeline)

    rest = sorted(k for k in parsed if k not in shown and k not in
                  ("title", "status", "description", "category", "type", "relevance", "expert", "video_id"))
    if all_fields:
        console.rule("every other field", align="left")
        for key in rest:
            console.print(f"[bold]{escape(key)}[/]: {escape(_humanize(key, fields[key]))}")
    elif rest:
        console.print(f"[dim]{len(rest)} more field(s): {escape(', '.join(rest))} (show --all, or --json)[/]")


def _humanize(key: str, value: str) -> str:
    """A stored value for people: epoch seconds (``*_since``, ``*_at``) as a time."""
    if key.endswith(("_since", "_at")):
        try:
            return when(datetime.fromtimestamp(float(value), tz=UTC))
        except (ValueError, OverflowError, OSError):
            pass
    return value


@app.command()
def rejected(limit: int = typer.Option(50, help="Newest N records.")) -> None:
    """Input that was refused, with the reason."""
    store = _store()
    table = Table(title="improvements:rejected")
    for col in ("at", "source", "field", "reason"):
        table.add_column(col, overflow="fold")
    for r in store.rejections(limit):
        table.add_row(r.at.isoformat(timespec="seconds"), escape(r.source), escape(r.location),
                      escape(r.reason))
    console.print(table)


@review_app.command("list")
def review_list(
    as_json: bool = typer.Option(False, "--json", help="Every waiting improvement as a JSON array "
                                 "(id, status, group, reason, since, waiting_seconds, title)."),
) -> None:
    """Everything waiting for a person, one line each with the one current reason and how
    long: reviews (pending_review), then branches to merge, stuck work and failed rollbacks."""
    store = _store()
    groups = needs_person(store, limits=_limits())
    if as_json:
        print(json.dumps([waiting_row(w) for items in groups.values() for w in items], ensure_ascii=False))
        return
    pending = sorted((w for items in groups.values() for w in items if w.status == Status.PENDING_REVIEW.value),
                     key=lambda w: (-w.age_seconds, w.improvement_id))
    console.print(one_line_table([(w.improvement_id, w.age_seconds, w.group.value if w.group else "-", w.reason)
                                  for w in pending], f"pending_review: {len(pending)}", middle="why"))
    _print_merge_pending(store)
    others = [w for g, items in groups.items() if g is not Group.MERGE_PENDING
              for w in items if w.status != Status.PENDING_REVIEW.value]
    if others:
        console.print(one_line_table([(w.improvement_id, w.age_seconds, w.group.value if w.group else "-",
                                       w.reason) for w in others],
                                     f"also waiting on a person: {len(others)}", middle="why"))


def waiting_row(w: Waiting) -> dict[str, object]:
    """One improvement that waits on a person, for scripts."""
    return {"id": w.improvement_id, "status": w.status, "group": w.group.value if w.group else None,
            "reason": w.reason, "since": w.since.isoformat() if w.since else None,
            "waiting_seconds": round(w.age_seconds, 1), "title": w.title, "actor": w.actor}


def _print_merge_pending(store: RedisStore) -> None:
    """Branch mode: what waits for a person to merge its branch (the other thing people
    owe the pipeline besides reviews), with how long."""
    from cortex_school.delivery.merge import pending_merges

    merges = pending_merges(store)
    if merges:
        console.print(merge_pending_table(merges))


def _review(improvement_id: str, approve: bool, reviewer: str, reason: str) -> None:
    from cortex_school.pipeline import decide_review

    store = _store()
    try:
        done = decide_review(store, ensure_valid_id(improvement_id), approve=approve,
                             reviewer=reviewer, reason=reason)
    except (TransitionRefused, ValueError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    console.print(f"{improvement_id}: {done.outcome.status} ({escape(done.outcome.detail)})")
    if done.queued:
        console.print(f"{improvement_id}: queued for implementation")


@app.command()
def implement(improvement_id: str) -> None:
    """Queue an approved improvement (or one stuck in implementing) for its worker."""
    store = _store()
    improvement = store.get(ensure_valid_id(improvement_id))
    if improvement is None:
        err.print(f"[red]no improvement {escape(improvement_id)}[/]")
        raise typer.Exit(1)
    if improvement.status not in (Status.APPROVED, Status.IMPLEMENTING):
        err.print(f"[red]{improvement_id} is {improvement.status.value}; only approved or "
                  "implementing improvements are implemented[/]")
        raise typer.Exit(1)
    from cortex_school.pipeline import rerun_stage

    rerun_stage(store, improvement.id, by=f"cli:{getpass.getuser()}")
    console.print(f"{improvement.id}: queued for implementation")


@app.command()
def metrics(
    port: int = typer.Option(9808, help="Port to serve /metrics on."),
    addr: str = typer.Option("0.0.0.0", help="Address to bind."),
    inspect_timeout: float = typer.Option(1.0, help="Seconds each scrape waits for the workers to "
                                          "say which queues they consume (cortex_queue_consumers)."),
) -> None:
    """Serve the Prometheus metrics (read from Redis) until interrupted."""
    import time as _time

    from celeryconfig import ALL_QUEUES
    from cortex_school.alerts import exporter_limits, queue_consumers, serve

    limits, breaker = exporter_limits(get_settings())
    serve(_store(), ALL_QUEUES, port, addr, limits=limits, breaker=breaker,
          consumers=lambda: queue_consumers(ALL_QUEUES, timeout=inspect_timeout))
    console.print(f"serving /metrics on {addr}:{port}")
    while True:
        _time.sleep(3600)


@app.command()
def dashboard(
    port: int | None = typer.Option(None, help="Port (default CORTEX_DASHBOARD_PORT, 8088)."),
    host: str | None = typer.Option(None, help="Address to bind (default CORTEX_DASHBOARD_HOST, 127.0.0.1)."),
) -> None:
    """The review dashboard in the browser: everything that waits on a person, each
    improvement's evidence, approve and reject. Needs CORTEX_DASHBOARD_TOKEN or
    CORTEX_DASHBOARD_TRUSTED_HEADER; refuses to start without either."""
    settings = get_settings()
    cfg = settings.dashboard
    problem = cfg.auth_problem()
    if problem is not None:
        err.print(f"[red]{escape(problem)}[/]")
        raise typer.Exit(2)
    import uvicorn

    from cortex_school.dashboard import app_from_settings

    web = app_from_settings(_store(), settings)
    bind, listen = host or cfg.host, port or cfg.port
    how = " and ".join(filter(None, ["a bearer token" if cfg.token else None,
                                     f"the {cfg.trusted_header} header" if cfg.trusted_header else None]))
    console.print(f"dashboard on http://{bind}:{listen}/ (authentication: {how})")
    uvicorn.run(web, host=bind, port=listen, log_level=settings.log_level.lower(), server_header=False)


@app.command()
def flower(
    port: int = typer.Option(5555, help="Port for Flower's web UI and API."),
    address: str = typer.Option("127.0.0.1", help="Address to bind."),
) -> None:
    """Flower on this Redis: workers, queues, and tasks (their args carry improvement ids)."""
    argv = [sys.executable, "-m", "celery", "-A", "cortex_school", "flower",
            f"--port={port}", f"--address={address}"]
    os.execvp(argv[0], argv)


@app.command()
def rollback(
    improvement_id: str,
    reason: str = typer.Option("manual rollback", help="Why (recorded, logged, notified)."),
    by: str = typer.Option(getpass.getuser(), help="Who asks for it."),
) -> None:
    """Roll back a committed, deployed or verified improvement: git revert, push, ArgoCD
    refresh, wait, check the system, record and notify."""
    from cortex_school.pipeline import NotNow, manual_rollback

    store = _store()
    try:
        why = manual_rollback(store, ensure_valid_id(improvement_id), by=by, reason=reason)
    except (NotNow, ValueError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    console.print(f"{improvement_id}: rollback queued ({escape(why)})")


@app.command()
def deploy(improvement_id: str) -> None:
    """Queue the deploy stage for a committed improvement. A branch-mode commit is deployed
    once its branch is merged: this looks for the merge now (exit 0 and nothing queued while
    it is not merged; exit 1 when the branch was deleted unmerged)."""
    from cortex_school.pipeline import after_commit, request_deploy

    store = _store()
    improvement = store.get(ensure_valid_id(improvement_id))
    if improvement is None or improvement.status is not Status.COMMITTED:
        err.print(f"[red]{escape(improvement_id)} is not committed[/]")
        raise typer.Exit(1)
    if improvement.delivery.merge_pending and not _merge_settled(store, improvement.id):
        return
    # A person asked: queue it even when a deploy was queued before (the stage is idempotent).
    if not after_commit(store, improvement.id):
        request_deploy(improvement.id)
    console.print(f"{improvement.id}: deploy queued")


def _merge_settled(store: RedisStore, improvement_id: str) -> bool:
    """Whether the branch was merged (recorded now); prints what was found otherwise."""
    from cortex_school.clients.gitops import GitOpsError
    from cortex_school.delivery.merge import settle_merge
    from cortex_school.runtime import get_gitops_repo

    try:
        check = settle_merge(store, improvement_id, get_gitops_repo(), actor=f"cli:{getpass.getuser()}")
    except GitOpsError as exc:
        err.print(f"[red]{improvement_id}: cannot look for the merge: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    if check.outcome in ("merged", "not_pending"):
        console.print(f"{improvement_id}: {escape(check.detail)}")
        return store.field(improvement_id, "status") == Status.COMMITTED.value
    if check.outcome == "rejected":
        err.print(f"[red]{improvement_id}: rejected: {escape(check.detail)}[/]")
        raise typer.Exit(1)
    console.print(f"{improvement_id}: {escape(check.detail)}; no deploy queued")
    return False


@policy_app.command("check")
def policy_check(
    paths: list[str] = typer.Argument(..., help="Manifest files or directories (.yaml, .yml, .json)."),
    audit: bool = typer.Option(False, "--audit", help="The lenient report for an existing "
                               "repository: Pod Security (restricted), RBAC, exposure, secrets; "
                               "without the rules only generated changes must meet."),
    output: str = typer.Option("table", "--format", help="table or json."),
    as_json: bool = typer.Option(False, "--json", help="The same as --format json."),
    repo: str = typer.Option(None, help="A GitOps checkout: objects, Secrets and recorded "
                             "series that already exist there (ownership, shadowing)."),
    kubernetes_version: str = typer.Option(None, help="Default: KUBERNETES_VERSION."),
) -> None:
    """Check manifests with exactly the gate a generated change must pass (all files together
    are one change). Exit 0 only when clean, 1 on any finding, 2 on unreadable input."""
    from cortex_school.workers.manifest_files import read_manifests, repo_context
    from cortex_school.workers.policy import GateContext, Violation, check_change, health_series
    from cortex_school.workers.schema_check import SchemaChecker

    if as_json:
        output = "json"
    if output not in ("table", "json"):
        err.print("[red]--format is table or json[/]")
        raise typer.Exit(2)
    settings = get_settings()
    missing = [p for p in paths if not Path(p).exists()]
    found = read_manifests([Path(p) for p in paths if Path(p).exists()])
    unreadable = [*((p, "no such file or directory") for p in missing), *found.unreadable]
    gate = GateContext.default(settings.policy, audit=audit, health_series=health_series(
        (settings.deploy.error_rate_query, settings.deploy.latency_query)))
    if repo:
        gate = repo_context(Path(repo), gate)
    checker = SchemaChecker(kubernetes_version or settings.policy.kubernetes_version)
    findings = [Violation(rule="malformed", object=src, detail=what) for src, what in found.not_objects]
    oversized = not audit and len(found.objects) > settings.policy.max_objects  # refused as such
    findings += checker.check_all([] if oversized else found.objects) + check_change(found.objects, gate)
    if output == "json":
        typer.echo(json.dumps({
            "mode": "audit" if audit else "gate", "objects": len(found.objects),
            "findings": [v.model_dump() for v in findings],
            "unreadable": [{"file": f, "reason": r} for f, r in unreadable],
        }, ensure_ascii=False, indent=1))
    else:
        for f, r in unreadable:
            err.print(f"[red]{escape(f)}: {escape(r)}[/]")
        table = Table(title=f"{len(findings)} finding(s) in {len(found.objects)} object(s) "
                      f"({'audit' if audit else 'gate'})")
        for column in ("object", "path", "rule", "action", "detail"):
            table.add_column(column)
        for v in findings:
            table.add_row(escape(v.object), escape(v.path), v.rule, v.action, escape(v.detail))
        console.print(table)
    raise typer.Exit(2 if unreadable else 1 if findings else 0)


@platform_app.command("show")
def platform_show(
    repo: str | None = typer.Option(None, "--repo", help="A checkout or folder of manifests; "
                                       "default: the configured GitOps repository, synced now."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole model as JSON."),
) -> None:
    """Objects, components, capabilities, charts and ArgoCD Applications of the platform."""
    from cortex_school.platform_model import load_platform, summary

    revision = None
    if repo is None:
        from cortex_school.runtime import get_gitops_repo

        gitops = get_gitops_repo()
        root = gitops.sync()
        revision = gitops.head()
    else:
        root = _existing_dir(repo)
    model = summary(load_platform(root, revision=revision, distribution=get_settings().deploy.distribution))
    if as_json:
        print(json.dumps(model, indent=2, default=str))
        return
    console.print(f"{escape(str(model['root']))}{' @ ' + model['revision'][:12] if model['revision'] else ''}: "
                  f"{model['objects']} objects in {len(model['namespaces'])} namespaces, "
                  f"{len(model['charts'])} charts, {len(model['applications'])} ArgoCD applications, "
                  f"{model['templates']} Helm templates")
    table = Table(title=f"components: {len(model['components'])}")
    for col in ("component", "namespaces", "evidence"):
        table.add_column(col, overflow="fold")
    for c in model["components"]:
        table.add_row(escape(c["name"]) + ("" if c["known"] else " [dim](not in catalogue)[/]"),
                      escape(", ".join(c["namespaces"])), escape(c["evidence"][0]) +
                      (f" [dim](+{len(c['evidence']) - 1})[/]" if len(c["evidence"]) > 1 else ""))
    console.print(table)
    if model["capabilities"]:
        console.print("capabilities: " + escape(", ".join(model["capabilities"])))
    for item in model["unreadable"][:20]:
        err.print(f"[yellow]unreadable {escape(item['file'])}: {escape(item['reason'])}[/]")


@review_app.command("approve")
def review_approve(
    improvement_id: str,
    by: str = typer.Option(getpass.getuser(), help="Who approves."),
    reason: str = typer.Option("approved on review", help="Why."),
) -> None:
    """Approve (knowledge-only items are acknowledged instead; never implemented)."""
    _review(improvement_id, True, by, reason)


@review_app.command("reject")
def review_reject(
    improvement_id: str,
    reason: str = typer.Option(..., help="Why it is rejected (recorded)."),
    by: str = typer.Option(getpass.getuser(), help="Who rejects."),
) -> None:
    """Reject an improvement waiting for review."""
    _review(improvement_id, False, by, reason)


@flags_app.command("show")
def flags_show() -> None:
    store = _store()
    table = Table(title="override flags (hash improvements:flags)")
    for col in ("flag", "value", "meaning"):
        table.add_column(col)
    for name, value in store.flags().items():
        table.add_row(name, "true" if value else "false", OVERRIDE_FLAGS[name])
    console.print(table)


@flags_app.command("set")
def flags_set(
    name: str,
    value: str,
    reason: str | None = typer.Option(None, help="Why (kept beside the flag)."),
    by: str = typer.Option(getpass.getuser(), help="Who sets it."),
) -> None:
    """Set a flag: NAME true|false."""
    if value.lower() not in ("true", "false"):
        err.print("[red]value must be true or false[/]")
        raise typer.Exit(2)
    from cortex_school.pipeline import set_override

    store = _store()
    try:
        set_override(store, name, value.lower() == "true", by=by, reason=reason)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}[/]")
        raise typer.Exit(2) from None
    console.print(f"{name} = {value.lower()}")


def _index() -> "VectorIndex":
    from cortex_school.runtime import make_index
    from cortex_school.validation.rag.embedding import use_all_cores

    index = make_index()
    use_all_cores()
    return index


@index_app.command("docs")
def index_docs_cmd(
    directory: str,
    replace: bool = typer.Option(False, "--replace", help="Make the docs corpus hold this directory's "
                                 "documents only (default: add to it; other directories stay)."),
) -> None:
    """Architecture docs: every *.md under DIRECTORY, split on headings."""
    from cortex_school.validation.indexing import index_docs

    with _embedding_progress() as progress:
        report = index_docs(_index(), _existing_dir(directory), replace=replace, progress=progress)
    _print_sync(report)


@index_app.command("gitops")
def index_gitops_cmd(
    source: str = typer.Argument(..., help="A directory, or a git repository URL/path."),
    branch: str | None = typer.Option(None, help="Branch to index (git sources)."),
) -> None:
    """GitOps manifests: one chunk per Kubernetes resource."""
    from cortex_school.validation.indexing import checkout, index_gitops, is_git_source

    root = checkout(source, get_settings().data_dir, branch) if is_git_source(source) else _existing_dir(source)
    with _embedding_progress() as progress:
        report = index_gitops(_index(), root, progress=progress)
    _print_sync(report)


@index_app.command("known-issues")
def index_known_issues_cmd(path: str) -> None:
    """Known issues: a Markdown file (or directory), one chunk per section."""
    from cortex_school.validation.indexing import index_known_issues

    target = Path(path)
    if not target.exists():
        err.print(f"[red]{path}: no such file or directory[/]")
        raise typer.Exit(2)
    with _embedding_progress() as progress:
        report = index_known_issues(_index(), target, progress=progress)
    _print_sync(report)


@index_app.command("history")
def index_history_cmd() -> None:
    """Previous improvements from Redis (implemented, in flight, failed)."""
    from cortex_school.validation.indexing import index_history

    with _embedding_progress() as progress:
        report = index_history(_index(), _store(), progress=progress)
    _print_sync(report)


@contextmanager
def _embedding_progress() -> "Iterator[Callable[[int, int], None]]":
    """A progress bar on stderr while chunks are embedded (shown from the first batch on;
    nothing when everything was unchanged)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task: list[Any] = []

        def update(done: int, total: int) -> None:
            if not task:
                task.append(bar.add_task("embedding", total=total))
            bar.update(task[0], completed=done)

        yield update


def _existing_dir(path: str) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        err.print(f"[red]{path}: not a directory[/]")
        raise typer.Exit(2)
    return directory


@app.command()
def worker(
    queues: str = typer.Option("all", help="Comma-separated queues, or 'all'."),
    concurrency: int = typer.Option(2, help="Worker processes."),
    loglevel: str | None = typer.Option(None, help="Defaults to LOG_LEVEL."),
    hostname: str | None = typer.Option(None, help="Worker node name (-n)."),
) -> None:
    """Start a Celery worker on chosen queues (replaces this process)."""
    from celeryconfig import ALL_QUEUES

    chosen = ALL_QUEUES if queues == "all" else tuple(q.strip() for q in queues.split(",") if q.strip())
    unknown = sorted(set(chosen) - set(ALL_QUEUES))
    if unknown:
        err.print(f"[red]unknown queue(s) {unknown}; declared: {', '.join(ALL_QUEUES)}[/]")
        raise typer.Exit(2)
    argv = worker_argv(chosen, concurrency, loglevel or get_settings().log_level, hostname)
    os.execvp(argv[0], argv)


def worker_argv(queues: tuple[str, ...], concurrency: int, loglevel: str, hostname: str | None) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "cortex_school", "worker",
            "-Q", ",".join(queues), "-c", str(concurrency), "-P", "prefork", "-E",
            "--loglevel", loglevel]
    if hostname:
        argv += ["-n", hostname]
    return argv


@app.command()
def bridge(
    once: bool = typer.Option(False, help="Stop when the list is empty."),
    block_seconds: float = typer.Option(5.0, help="BLMOVE timeout per poll."),
) -> None:
    """Consume the video service's Redis list (youtube:improvements) reliably.

    A document that cannot be stored goes to <list>:dead_letter with the reason; exit
    status 1 when any did.
    """
    from cortex_school.intake.bridge import dead_letter_list, run_bridge

    settings = get_settings()
    store = _store()
    dead: list[dict] = []

    def on_dead_letter(record: dict) -> None:
        dead.append(record)
        console.print(f"[red]✗ dead-lettered ({record['length']} characters, "
                      f"{escape(record['error'])}): {escape(record['reason'])}[/]", soft_wrap=True)

    handled = run_bridge(
        connect(settings.redis.url),
        source_list=settings.ingest.bridge_list,
        ingest=lambda raw, source: ingest_document(store, raw, source, caps=settings.ingest,
                                                   enqueue=_enqueue),
        block_seconds=block_seconds,
        once=once,
        on_report=print_report,
        on_dead_letter=on_dead_letter,
    )
    console.print(f"{handled} document(s) handled")
    if dead:
        err.print(f"[red]{len(dead)} document(s) moved to "
                  f"{escape(dead_letter_list(settings.ingest.bridge_list))}[/]")
        raise typer.Exit(1)


@app.command()
def demo(
    samples: str = typer.Option("examples/proposals", help="Directory of sample proposals."),
    timeout: float = typer.Option(180.0, help="Seconds to wait for the pipeline to go idle."),
    concurrency: int = typer.Option(2, help="Worker processes."),
    reset: bool = typer.Option(False, help="Delete this database's pipeline state first."),
    platform: str = typer.Option("examples/platform",
                                 help="Sample platform to index for RAG validation ('' to skip)."),
    dashboard: bool = typer.Option(True, help="Serve the review dashboard on 127.0.0.1 while it runs."),
) -> None:
    """Start a worker, ingest the samples, wait until idle, print the funnel and decisions."""
    from cortex_school.cli.demo import reset_demo_gitops, run_demo

    store = _store()
    if reset:
        console.print(f"reset: deleted {store.purge()} pipeline keys")
        reset_demo_gitops()
    raise typer.Exit(run_demo(store, samples=samples, timeout=timeout, concurrency=concurrency,
                              platform=platform or None, dashboard=dashboard))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
