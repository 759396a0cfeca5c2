"""What one wait for a namespace lease costs: the first run of an improvement (fetch,
plan on the platform model, render, gate, discovery) against every later run while
another change holds the namespace (one Redis call), on the realistic fixture.

    .venv/bin/python bench/lease_wait.py [--fixture examples/platform-k3s] [--runs 20]

Prints the median of each and, with the task's backoff (5 s doubling to 30 s), how many
runs 4 waiters make in 4 minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote  # noqa: E402
from cortex_school.models import Status  # noqa: E402
from cortex_school.settings import PolicySettings  # noqa: E402
from cortex_school.store.memory import MemoryStore  # noqa: E402
from cortex_school.tasks.implement import LEASE_WAIT_SECONDS, MAX_LEASE_WAIT_SECONDS  # noqa: E402
from cortex_school.workers.implement import Implementer, run_implement  # noqa: E402
from cortex_school.workers.planning import OfflinePlanner  # noqa: E402
from cortex_school.workers.schema_check import SchemaChecker  # noqa: E402
from tests.factories import make_improvement  # noqa: E402

AUTHOR = "Cortex Online School <school@cortex.ai>"


def runs_in(seconds: float) -> int:
    """Runs one waiter makes in ``seconds`` with the task's backoff."""
    t, n = 0.0, 0
    while t < seconds:
        n += 1
        t += min(MAX_LEASE_WAIT_SECONDS, LEASE_WAIT_SECONDS * 2 ** min(n - 1, 6))
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixture", default=str(ROOT / "examples" / "platform-k3s"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        remote = ensure_bare_remote(Path(tmp) / "remote.git", "main", Path(args.fixture) / "gitops")
        repo = GitOpsRepo(remote=str(remote), branch="main", workdir=Path(tmp) / "clones", author=AUTHOR)
        implementer = Implementer(planner=OfflinePlanner("knowledge"), repo=repo, schemas=SchemaChecker("1.31.0"),
                                  policy=PolicySettings(allowed_namespaces=["knowledge"]), co_author=AUTHOR,
                                  lease=lambda iid, nss: "ffffffffffffffff")
        store = MemoryStore()
        first, later = [], []
        for i in range(args.runs):
            imp = make_improvement(f"Add a PodDisruptionBudget for the Qdrant StatefulSet ({i})",
                                   notes="maxUnavailable: 1", video_id=f"leasebench{i:02d}")
            store.create(imp, actor="bench", reason="bench")
            for target in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
                store.transition(imp.id, target, actor="bench", reason="bench")
            for bucket in (first, later, later):
                started = time.perf_counter()
                outcome, _ = run_implement(store, imp.id, implementer=replace(implementer), worker="architecture",
                                           actor="bench")
                bucket.append((time.perf_counter() - started) * 1000)
                assert outcome.outcome == "waiting", outcome.detail
    full, wait = statistics.median(first), statistics.median(later)
    print(f"first run (fetch, plan, render, gate): p50 {full:.1f} ms; a later wait: p50 {wait:.2f} ms")
    n = runs_in(240)
    print(f"4 waiters for 4 minutes: {4 * n} runs, {4} of them full ({4 * (n - 1)} lease checks, "
          f"{4 * full / 1000 + 4 * (n - 1) * wait / 1000:.2f} s of work); before: every run full every "
          f"{LEASE_WAIT_SECONDS:.0f} s, {4 * 48} full runs ({4 * 48 * full / 1000:.1f} s of work)")


if __name__ == "__main__":
    main()
