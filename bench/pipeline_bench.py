"""Pipeline benchmarks, each printing its figures (asserts nothing):

1. route → evaluate (panel chord) → aggregate → validate → approve with the offline expert
   (RAG off), against a bare Celery chain of no-op tasks of the same length, in the same
   run, on the same Redis, with the same worker settings (prefork, 2 processes); the ratio.
2. End to end through implement: commits to a local bare GitOps repo, per minute.
3. Worker RSS per queue group, with and without the embedding model.

    .venv/bin/python bench/pipeline_bench.py [--n 500] [--implement 60]

Uses Redis database 12 (BENCH_REDIS_DB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["REDIS_DB"] = os.environ.get("BENCH_REDIS_DB", "12")
os.environ["RAG_ENABLED"] = "false"
os.environ.pop("ANTHROPIC_API_KEY", None)
os.environ.pop("LLMD_ENDPOINT", None)

import subprocess  # noqa: E402

import redis  # noqa: E402

from celery import chain  # noqa: E402
from celeryconfig import IMPLEMENT_QUEUES, PIPELINE_QUEUES  # noqa: E402
from cortex_school.celery import app  # noqa: E402
from cortex_school.cli.demo import start_worker, stop_worker, wait_until_idle, wait_until_ready  # noqa: E402
from cortex_school.clients.gitops import ensure_bare_remote  # noqa: E402
from cortex_school.models import Improvement, ImprovementType, Status, fingerprint, improvement_id  # noqa: E402
from cortex_school.pipeline import enqueue  # noqa: E402
from cortex_school.runtime import get_store  # noqa: E402
from cortex_school.settings import get_settings  # noqa: E402
from cortex_school.states import RESTING_BEFORE_DEPLOY  # noqa: E402

RESTING = RESTING_BEFORE_DEPLOY | {Status.APPROVED}


def improvement(n: int, prefix: str, implementable: bool = False) -> Improvement:
    if implementable:
        desc = f"Alert when bench service {prefix}{n} is down"
        notes = (f'Create a PrometheusRule in the monitoring namespace with expr up{{job="b{n}"}} == 0 '
                 "for 5m, severity warning.")
        category, relevance = "monitoring", 0.97
    else:
        desc = f"Benchmark proposal {prefix} {n}: tune the cache"
        notes, category, relevance = "Tune it.", "architecture", 0.5 + (n % 5) / 10
    vid = f"{prefix}{n:06d}"
    return Improvement(id=improvement_id(vid, desc), video_id=vid, title="bench", category=category,
                       type=ImprovementType.ENHANCEMENT, description=desc, implementation_notes=notes,
                       relevance=relevance, fingerprint=fingerprint(desc))


def rss_mib(pid: int) -> float:
    """RSS of a worker: its main process and its pool children."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                    text=True).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def bench_pipeline(n: int, log_dir: Path) -> None:
    store = get_store()
    store.purge()
    app.control.purge()
    name = f"bench-pipe-{os.getpid()}@localhost"
    proc = start_worker(queues=PIPELINE_QUEUES, concurrency=2, name=name,
                        log=open(log_dir / "pipe.log", "wb"), loglevel="WARNING")
    try:
        wait_until_ready(name, proc)
        batch = [improvement(k, "pipe") for k in range(n)]
        started = time.time()
        for imp in batch:
            store.create(imp, actor="bench", reason="bench")
            enqueue(imp)
        statuses = wait_until_idle(store, {i.id for i in batch}, timeout=600, resting=RESTING)
        elapsed = time.time() - started
        latencies = []
        for imp in store.many([i.id for i in batch]):
            fields = store.raw_fields(imp.id)
            latencies.append(float(fields["status_since"]) - imp.created_at.timestamp())
        rss = rss_mib(proc.pid)
    finally:
        stop_worker(proc)
    assert all(s in {r.value for r in RESTING} for s in statuses.values())
    ours = n / elapsed
    print(f"pipeline (route, evaluate, aggregate, validate, approve; offline expert, RAG off): "
          f"{n} in {elapsed:.1f}s = {ours:.1f}/s; latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {statistics.quantiles(latencies, n=20)[18] * 1000:.0f} ms; worker RSS {rss:.0f} MiB")

    from bare_chain import bare, last, step

    r = redis.Redis.from_url(get_settings().redis.url)
    r.delete("bench:bare:done")
    bare.control.purge()
    bname = f"bench-bare-{os.getpid()}@localhost"
    argv = [sys.executable, "-m", "celery", "-A", "bare_chain:bare", "worker", "-Q", "bare", "-c", "2",
            "-P", "prefork", "-n", bname, "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    bproc = subprocess.Popen(argv, cwd=ROOT / "bench", env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=open(log_dir / "bare.log", "wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not bare.control.ping(destination=[bname], timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("bare worker not ready")
        started = time.time()
        for k in range(n):
            token = f"t{k}"
            chain(step.si(token), step.si(token), step.si(token), step.si(token),
                  last.si(token, time.time())).apply_async()
        while r.llen("bench:bare:done") < n:
            time.sleep(0.05)
        elapsed = time.time() - started
        done = [line.split() for line in r.lrange("bench:bare:done", 0, -1)]
        lat = [float(end) - float(begin) for _, begin, end in done]
    finally:
        stop_worker(bproc)
    bare_rate = n / elapsed
    print(f"bare Celery chain of 5 no-op tasks: {n} in {elapsed:.1f}s = {bare_rate:.1f}/s; latency p50 "
          f"{statistics.median(lat) * 1000:.0f} ms, p95 {statistics.quantiles(lat, n=20)[18] * 1000:.0f} ms")
    print(f"ratio: pipeline / bare chain throughput = {ours / bare_rate:.2f} (target >= 0.6)")


def bench_implement(n: int, log_dir: Path) -> None:
    store = get_store()
    store.purge()
    app.control.purge()
    remote = ensure_bare_remote(log_dir / "remote.git", "main", ROOT / "examples" / "platform" / "gitops")
    env = {"GITOPS_REMOTE": str(remote), "GITOPS_WORKDIR": str(log_dir / "clones"),
           "ALLOWED_NAMESPACES": "cortex-system,cortex,monitoring", "ONE_CHANGE_PER_NAMESPACE": "false"}
    name = f"bench-impl-{os.getpid()}@localhost"
    proc = start_worker(queues=PIPELINE_QUEUES + IMPLEMENT_QUEUES, concurrency=2, name=name, env=env,
                        log=open(log_dir / "impl.log", "wb"), loglevel="WARNING")
    try:
        wait_until_ready(name, proc)
        batch = [improvement(k, "impl", implementable=True) for k in range(n)]
        started = time.time()
        for imp in batch:
            store.create(imp, actor="bench", reason="bench")
            enqueue(imp)
        statuses = wait_until_idle(store, {i.id for i in batch}, timeout=900, resting=RESTING)
        elapsed = time.time() - started
        rss = rss_mib(proc.pid)
    finally:
        stop_worker(proc)
    committed = sum(1 for s in statuses.values() if s == Status.COMMITTED.value)
    print(f"end to end through implement (merge commits to a local bare repo): {committed}/{n} "
          f"committed in {elapsed:.1f}s = {committed / elapsed * 60:.0f} improvements/min; "
          f"worker RSS {rss:.0f} MiB")


def bench_rss(log_dir: Path) -> None:
    """RSS of an idle worker per queue group, and of a validate worker that loaded the model."""
    groups = {"pipeline": ["route", "aggregate", "approve"], "experts": [q for q in PIPELINE_QUEUES if q.startswith("expert.")],
              "implement": list(IMPLEMENT_QUEUES), "verify": ["deploy", "verify", "rollback"]}
    for group, queues in groups.items():
        name = f"bench-rss-{group}-{os.getpid()}@localhost"
        proc = start_worker(queues=queues, concurrency=2, name=name, log=open(log_dir / f"{group}.log", "wb"),
                            loglevel="WARNING")
        try:
            wait_until_ready(name, proc)
            time.sleep(1)
            print(f"RSS {group} worker (2 processes, idle): {rss_mib(proc.pid):.0f} MiB")
        finally:
            stop_worker(proc)
    name = f"bench-rss-validate-{os.getpid()}@localhost"
    proc = start_worker(queues=["validate"], concurrency=2, name=name, env={"RAG_ENABLED": "true"},
                        log=open(log_dir / "validate.log", "wb"), loglevel="WARNING")
    try:
        wait_until_ready(name, proc)
        print(f"RSS validate worker (2 processes) before loading the model: {rss_mib(proc.pid):.0f} MiB")
        store = get_store()
        for k in range(2):  # one validation per pool process loads the model there
            imp = improvement(k, "rss")
            store.create(imp, actor="bench", reason="bench")
            for target in (Status.CATEGORIZED, Status.ASSESSED):
                store.transition(imp.id, target, actor="bench", reason="bench")
            app.signature("cortex_school.tasks.validate.validate", args=(imp.id,)).apply_async()
        wait_until_idle(store, set(), timeout=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(store.ids_with_status(Status.VALIDATED)) < 2:
            time.sleep(0.2)
        print(f"RSS validate worker (2 processes) with the embedding model loaded: {rss_mib(proc.pid):.0f} MiB")
    finally:
        stop_worker(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--implement", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        bench_pipeline(args.n, log_dir)
        bench_implement(args.implement, log_dir)
        bench_rss(log_dir)
    get_store().purge()


if __name__ == "__main__":
    main()
