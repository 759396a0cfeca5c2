"""The demo: a real worker subprocess, the shipped samples, the funnel.

The worker helpers here are also what the live tests use to run a real worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape

from cortex_school.models import Status
from cortex_school.settings import get_settings
from cortex_school.states import RESTING
from cortex_school.store import RedisStore

console = Console(highlight=False)


def start_worker(
    *,
    queues: Iterable[str],
    concurrency: int = 2,
    name: str,
    env: dict[str, str] | None = None,
    log: IO[bytes] | int | None = None,
    loglevel: str = "INFO",
) -> subprocess.Popen[bytes]:
    """A real ``celery worker`` process (prefork pool) on the given queues."""
    argv = [
        sys.executable, "-m", "celery", "-A", "cortex_school", "worker",
        "-Q", ",".join(queues), "-c", str(concurrency), "-P", "prefork", "-E",
        "-n", name, "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ]
    return subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until_ready(name: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Block until the worker answers a control ping (or fail if it died)."""
    from cortex_school.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {proc.returncode} before it was ready")
        if app.control.ping(destination=[name], timeout=0.5):
            return
    raise TimeoutError(f"worker {name} not ready after {timeout:.0f}s")


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Warm shutdown (SIGTERM: finish current tasks), then kill if it hangs."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_until_idle(store: RedisStore, ids: set[str], timeout: float,
                    resting: frozenset[Status] = RESTING) -> dict[str, str | None]:
    """Poll until every improvement rests (nothing queued for it). Returns id → status
    (None for an id the store does not have)."""
    deadline = time.monotonic() + timeout
    rest = {r.value for r in resting}
    while True:
        statuses = {i: row[0] for i, row in store.fields_many(sorted(ids), "status").items()}
        busy = [i for i, s in statuses.items() if s not in rest]
        if not busy or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def index_platform(platform: Path) -> dict[str, str]:
    """Index the sample platform (docs, GitOps tree, known issues); returns the env the
    workers need to use it (the cluster capacity file)."""
    from cortex_school.runtime import make_index
    from cortex_school.validation.indexing import index_docs, index_gitops, index_known_issues
    from cortex_school.validation.rag.embedding import use_all_cores

    index = make_index()
    use_all_cores()
    started = time.monotonic()
    reports = [index_docs(index, platform / "docs"), index_gitops(index, platform / "gitops"),
               index_known_issues(index, platform / "known-issues.md")]
    for r in reports:
        console.print(f"indexed {r.corpus}: {r.total} chunks ({r.embedded} embedded, "
                      f"{r.unchanged} unchanged, {r.deleted} removed)")
    console.print(f"platform indexed in {time.monotonic() - started:.1f}s\n")
    capacity = platform / "cluster.yaml"
    return {"CLUSTER_CAPACITY_FILE": str(capacity.resolve())} if capacity.exists() else {}


DEMO_NAMESPACES = "cortex-system,cortex,monitoring"
# The demo's simulated cluster: one injected fault so one improvement is rolled back, and
# short waits so the loop finishes in seconds (a real cluster keeps the 300 s window).
DEMO_CLUSTER_ENV = {
    "CLUSTER_TARGET": "simulated",
    "SIMULATED_FAULTS": "redis-exporter=crashloop",
    "HEALTH_CHECK_DURATION": "6",
    "HEALTH_CHECK_INTERVAL": "2",
    "DEPLOY_POLL_INTERVAL": "1",
}


def demo_remote() -> Path:
    return get_settings().data_dir / "gitops-remote.git"


def reset_demo_gitops() -> None:
    """Forget the demo's GitOps remote and the workers' clones (with ``demo --reset``)."""
    import shutil

    from cortex_school.clients.cluster.simulated import KEY
    from cortex_school.store import connect

    settings = get_settings()
    for path in (demo_remote(), settings.gitops.workdir or settings.data_dir / "gitops"):
        if path.exists():
            shutil.rmtree(path)
    connect(settings.redis.url).delete(KEY)


def prepare_gitops(platform: str | None) -> dict[str, str]:
    """The GitOps remote the demo's workers commit to: GITOPS_REMOTE when the user set it,
    else a local bare repository seeded with the sample platform's manifests."""
    from cortex_school.clients.gitops import ensure_bare_remote

    settings = get_settings()
    env: dict[str, str] = {k: v for k, v in DEMO_CLUSTER_ENV.items() if k not in os.environ}
    if not os.environ.get("ALLOWED_NAMESPACES"):
        env["ALLOWED_NAMESPACES"] = DEMO_NAMESPACES  # the sample platform's namespaces
    if settings.gitops.remote_url:
        console.print(f"GitOps remote: {escape(settings.gitops.remote_url)} (GITOPS_REMOTE)")
        return env
    seed = Path(platform) / "gitops" if platform else None
    remote = ensure_bare_remote(demo_remote().resolve(), settings.gitops.github_branch,
                                seed if seed and seed.is_dir() else None)
    console.print(f"GitOps remote: local bare repository {remote} (demo; set GITOPS_REMOTE for "
                  "yours)")
    return {**env, "GITOPS_REMOTE": str(remote)}


def print_commits(store: RedisStore, ids: set[str]) -> None:
    from rich.table import Table

    table = Table(title="Implemented: committed, deployed, verified or rolled back")
    for column in ("improvement", "worker", "commit", "status", "outcome"):
        table.add_column(column)
    for imp_id in sorted(ids):
        fields = store.raw_fields(imp_id)
        if not fields.get("git_commit"):
            continue
        status = fields.get("status", "")
        if status == Status.FAILED.value:
            outcome = (f"rolled back by {fields.get('rollback_commit', '')[:12]}: "
                       f"{fields.get('failure_reason', '')}")
        elif status == Status.VERIFIED.value:
            outcome = "healthy for the whole window"
        else:
            outcome = ", ".join(json.loads(fields.get("git_files", "[]")))
        table.add_row(imp_id, escape(fields.get("assigned_worker", "?").split("@")[0]),
                      fields.get("git_commit", "")[:12], status, escape(outcome[:300]))
    console.print(table)
    remote = get_settings().gitops.remote_url or str(demo_remote().resolve())
    if Path(remote).is_dir():
        log = subprocess.run(["git", "--git-dir", remote, "log", "--graph", "--oneline", "-n", "40",
                              get_settings().gitops.github_branch],
                             capture_output=True, text=True, check=False)
        console.print(f"git log of {remote}:")
        print(log.stdout or log.stderr)  # plain: Rich would re-wrap the graph


@dataclass
class DemoDashboard:
    url: str
    token: str
    stop: Callable[[], None]


def start_dashboard(store: RedisStore, *, remote: str | None) -> DemoDashboard | None:
    """The review dashboard in a background thread of the demo, on 127.0.0.1 only, with a
    token generated for this run (CORTEX_DASHBOARD_PORT when free, else any free port).
    It lives as long as the demo; None (and why, printed) when it cannot start."""
    import secrets
    import socket
    import threading

    import uvicorn

    from cortex_school.dashboard import app_from_settings

    settings = get_settings()
    token = secrets.token_urlsafe(24)
    cfg = settings.dashboard.model_copy(update={"token": token, "trusted_header": None, "host": "127.0.0.1"})
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", cfg.port))
            port = cfg.port
        except OSError:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    app = app_from_settings(store, settings, dashboard=cfg, remote=remote)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           server_header=False))
    thread = threading.Thread(target=server.run, name="demo-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            console.print("[yellow]dashboard did not start; run `cortex-school dashboard` instead[/]")
            server.should_exit = True
            return None
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return DemoDashboard(f"http://127.0.0.1:{port}/", token, stop)


def run_demo(
    store: RedisStore, *, samples: str, timeout: float, concurrency: int, platform: str | None = None,
    dashboard: bool = False,
) -> int:
    """The demo; ``dashboard``: serve the review dashboard while it runs and print its URL
    and this run's token (the exit code is the same either way)."""
    settings = get_settings()
    backend = {
        "offline": "offline expert (deterministic rules, no LLM)",
        "anthropic": "Claude (anthropic SDK)",
        "llmd": f"LLM-D at {settings.experts.llmd_endpoint}",
    }[settings.experts.resolved_backend()]
    console.rule("[bold]Cortex Online School demo")
    console.print(f"Redis {settings.redis.url} · experts: {backend}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "demo-worker.log"
    name = f"demo-{os.getpid()}@localhost"
    worker_env: dict[str, str] = {}
    if platform and settings.rag.enabled:
        worker_env = index_platform(Path(platform))
    worker_env.update(prepare_gitops(platform))
    web = start_dashboard(store, remote=worker_env.get("GITOPS_REMOTE")) if dashboard else None
    if web is not None:
        console.print(f"dashboard: {web.url} (token {web.token})")
    try:
        return _run(store, samples=samples, timeout=timeout, concurrency=concurrency,
                    worker_env=worker_env, log_path=log_path, name=name)
    finally:
        if web is not None:
            web.stop()
            remote = worker_env.get("GITOPS_REMOTE")
            console.print("dashboard stopped with the demo; to keep reviewing: "
                          + (f"GITOPS_REMOTE={remote} " if remote else "")
                          + "CORTEX_DASHBOARD_TOKEN=$(openssl rand -hex 32) cortex-school dashboard")


def _run(store: RedisStore, *, samples: str, timeout: float, concurrency: int,
         worker_env: dict[str, str], log_path: Path, name: str) -> int:
    from celeryconfig import ALL_QUEUES
    from cortex_school.cli.render import decisions_table, funnel_table, print_report
    from cortex_school.intake.ingest import ingest_document, iter_sources
    from cortex_school.models import Rejection
    from cortex_school.pipeline import enqueue

    settings = get_settings()
    with open(log_path, "wb") as log:
        proc = start_worker(queues=ALL_QUEUES, concurrency=concurrency, name=name, log=log,
                            env=worker_env)
        try:
            wait_until_ready(name, proc)
            console.print(f"worker {name} ready on {len(ALL_QUEUES)} queues (log: {log_path})\n")
            ids: set[str] = set()
            started = time.monotonic()
            for source, raw, problem in iter_sources([samples]):
                if raw is None:
                    store.record_rejection(Rejection(source=source, location="path", reason=problem or ""))
                    console.print(f"[red]{escape(source)}: {escape(problem or '')}[/]")
                    continue
                report = ingest_document(store, raw, Path(source).name, caps=settings.ingest,
                                         enqueue=enqueue)
                print_report(report)
                ids.update(report.created, report.existing)
            if not ids:
                console.print("[red]no proposals accepted[/]")
                return 1
            statuses = wait_until_idle(store, ids, timeout)
            elapsed = time.monotonic() - started
        finally:
            stop_worker(proc)

    busy = sorted(i for i, s in statuses.items() if s not in {r.value for r in RESTING})
    console.print()
    console.print(funnel_table(store))
    console.print(decisions_table(store.many(ids), f"Decisions for the {len(ids)} sample improvements"))
    print_commits(store, ids)
    count = {st: sum(1 for s in statuses.values() if s == st.value) for st in Status}
    approved = sum(1 for i in store.many(ids) if i.decision is not None and i.decision.approved)
    console.print(
        f"{len(ids)} improvements: {approved} auto-approved; {count[Status.VERIFIED]} verified, "
        f"{count[Status.FAILED]} rolled back, {count[Status.COMMITTED]} committed and waiting, "
        f"{count[Status.PENDING_REVIEW]} to human review; pipeline idle after {elapsed:.1f}s"
    )
    if busy:
        console.print(f"[red]{len(busy)} improvement(s) still in flight after {timeout:.0f}s: "
                      f"{', '.join(busy[:10])} (worker log: {log_path})[/]")
        return 1
    return 0
