"""How long the gate takes: a typical change, the repository facts, and input size.

    .venv/bin/python bench/gate_bench.py

Prints figures, asserts nothing. The baseline in the same run is the schema check alone
(kubernetes-validate strict), which every change already paid before the gate existed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_workers import every_kind_plan  # noqa: E402

from cortex_school.settings import PolicySettings  # noqa: E402
from cortex_school.workers import render_plan  # noqa: E402
from cortex_school.workers.manifest_files import repo_context  # noqa: E402
from cortex_school.workers.manifests import RenderContext  # noqa: E402
from cortex_school.workers.policy import GateContext, check_change  # noqa: E402
from cortex_school.workers.schema_check import SchemaChecker  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    runs.sort()
    return statistics.median(runs), runs[int(len(runs) * 0.95) - 1]


def main() -> None:
    policy = PolicySettings()
    ctx_render = RenderContext("0123456789abcdef", "vid00000001", "A video")
    manifests = render_plan(every_kind_plan(), ctx_render)
    schemas = SchemaChecker(policy.kubernetes_version)
    seed = ROOT / "examples" / "platform" / "gitops"
    gate = repo_context(seed, GateContext.default(policy))
    check_change(manifests, gate)  # warm detect-secrets
    print(f"change of {len(manifests)} objects (every generated kind)")
    p50, p95 = timed(lambda: schemas.check_all(manifests), 50)
    print(f"  baseline, schema check alone: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    p50, p95 = timed(lambda: check_change(manifests, gate), 50)
    print(f"  the gate:                     p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    p50, p95 = timed(lambda: repo_context(seed, GateContext.default(policy)), 20)
    print(f"  repository facts ({seed.name}, 25 objects): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    big = policy.model_copy(update={"max_field_bytes": 2_000_000})
    ctx = GateContext.default(big)
    print("one ConfigMap value of N bytes (regex bait 'a://b:' + x*N):")
    for n in (10_000, 100_000, 1_000_000):
        cm = [{"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "cortex-system"},
               "data": {"v": "a://b:" + "x" * n}}]
        p50, _ = timed(lambda: check_change(cm, ctx), 5)
        print(f"  {n:>9,} bytes: {p50:8.1f} ms ({p50 / n * 1e3:.2f} µs per byte)")


if __name__ == "__main__":
    main()
