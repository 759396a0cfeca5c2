"""RAG benchmark: indexing throughput, validate-stage latency at 10k chunks, RSS.

    .venv/bin/python bench/rag_bench.py [--chunks 10000] [--queries 200]

Uses Redis database 13 (override with BENCH_REDIS_DB) and its own key prefix, the real
all-MiniLM-L6-v2 model and the embedded index (in-memory Qdrant mirror per process).
Prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("REDIS_DB", os.environ.get("BENCH_REDIS_DB", "13"))

import redis

from cortex_school.models import Status
from cortex_school.settings import get_settings
from cortex_school.store import RedisStore
from cortex_school.validation import (
    ArchitecturalConflictCheck,
    CapacityCheck,
    ExactDuplicateCheck,
    RagContext,
    SemanticDuplicateCheck,
    validate,
)
from cortex_school.validation.dependencies import PlatformDependencyCheck
from cortex_school.validation.rag.chunking import Chunk, chunk_manifests
from cortex_school.validation.rag.embedding import get_embedder
from cortex_school.validation.rag.index import EmbeddedIndex

COMPONENTS = ["Redis", "Qdrant", "PostgreSQL", "Prometheus", "Grafana", "Traefik", "ArgoCD",
              "Langflow", "cert-manager", "CoreDNS", "Loki", "MinIO", "NATS", "KEDA", "Velero"]
TOPICS = ["backups", "resource limits", "readiness probes", "alerting", "dashboards", "ingress routes",
          "network policies", "TLS certificates", "replication", "autoscaling", "log retention",
          "secret rotation", "upgrade procedure", "disaster recovery", "capacity planning"]
VERBS = ["must", "should", "is expected to", "is configured to", "runs with"]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def doc_chunks(n: int, rng: random.Random) -> list[Chunk]:
    out = []
    for i in range(n):
        c, t, v = rng.choice(COMPONENTS), rng.choice(TOPICS), rng.choice(VERBS)
        text = (f"## {c} {t} (section {i})\n{c} {v} follow the platform standard for {t}. "
                f"Changes to {c} go through GitOps in apps/{rng.choice(['cortex', 'monitoring', 'cortex-system'])}; "
                f"owners review {t} quarterly, and incidents about {c} {t} are tracked in the runbook {i}. "
                f"Limits: {rng.randint(1, 8)} CPU, {rng.randint(1, 32)}Gi memory, {rng.randint(1, 5)} replicas.")
        out.append(Chunk(corpus="docs", source=f"bench/doc-{i // 20}.md", key=f"s{i}", text=text,
                         payload={"document": f"doc-{i // 20}.md", "section": f"{c} {t} {i}"}))
    return out


def validate_phase(queries: int, threads: int) -> None:
    """Run in a fresh process, as a worker would: model, mirror load, validations, RSS."""
    import torch

    torch.set_num_threads(threads)
    rng = random.Random(11)
    settings = get_settings()
    embedder = get_embedder()
    index = EmbeddedIndex(settings.redis.url, embedder, prefix="rag-bench")
    store = RedisStore.from_url(settings.redis.url)
    raw = redis.Redis.from_url(settings.redis.url)  # the bench marks items validated directly
    rss_model = rss_mib()
    t0 = time.perf_counter()
    index.search("docs", embedder.encode(["warm up"])[0], 5)
    mirror_s = time.perf_counter() - t0

    from tests.factories import make_improvement  # the same builder the tests use

    latencies = []
    for q in range(queries):
        c, t = rng.choice(COMPONENTS), rng.choice(TOPICS)
        imp = make_improvement(f"Improve {c} {t} with a new policy number {q} ({threads})",
                               video_id=f"benchvid{q:04d}", category="architecture",
                               notes=f"Adjust {c} {t}; deploy with 1 replica requesting 256Mi memory.")
        store.create(imp, actor="bench", reason="bench")
        ctx = RagContext(index, embedder)  # one embedding per improvement, reused by all checks
        checks = [ExactDuplicateCheck(store), SemanticDuplicateCheck(ctx, store, 0.85),
                  ArchitecturalConflictCheck(ctx, 5, 0.45), PlatformDependencyCheck(lambda: None),
                  CapacityCheck(None)]
        t0 = time.perf_counter()
        validate(imp, checks)
        latencies.append((time.perf_counter() - t0) * 1000)
        raw.hset(f"improvement:{imp.id}", "status", Status.VALIDATED.value)
        ctx.remember(imp)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    vec = embedder.encode(["Improve Redis backups"])[0]
    search = []
    for _ in range(100):
        t0 = time.perf_counter()
        index.search("docs", vec, 5)
        search.append((time.perf_counter() - t0) * 1000)
    encode = []
    for q in range(100):
        t0 = time.perf_counter()
        embedder.encode([f"architecture: Improve Redis backups number {q}"])
        encode.append((time.perf_counter() - t0) * 1000)
    search.sort()
    encode.sort()
    print(f"[worker process, torch threads={threads}] RSS {rss_model:.0f} MiB with the model, "
          f"{rss_mib():.0f} MiB with the {index.count('docs')}-point mirror loaded "
          f"(mirror load {mirror_s * 1000:.0f} ms)")
    print(f"  validate stage (5 checks, embedding included), {queries} improvements: "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"  of which: embedding one text p50 {encode[50]:.1f} / p95 {encode[94]:.1f} ms; "
          f"top-5 docs query (Qdrant local mode, in memory) p50 {search[50]:.1f} / p95 {search[94]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--validate-phase", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.validate_phase:
        validate_phase(args.queries, args.validate_phase)
        return
    import subprocess

    from cortex_school.validation.rag.embedding import use_all_cores

    rng = random.Random(7)
    settings = get_settings()
    t0 = time.perf_counter()
    embedder = get_embedder()
    load_s = time.perf_counter() - t0
    use_all_cores()
    index = EmbeddedIndex(settings.redis.url, embedder, prefix="rag-bench")
    for corpus in ("docs", "gitops", "improvements", "known_issues"):
        index.drop(corpus)
    store = RedisStore.from_url(settings.redis.url)
    store.purge()

    chunks = doc_chunks(args.chunks, rng)
    words = statistics.mean(len(c.text.split()) for c in chunks)
    t0 = time.perf_counter()
    report = index.sync("docs", chunks)
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = index.sync("docs", chunks)
    noop_s = time.perf_counter() - t0
    gitops, _ = chunk_manifests("\n---\n".join(
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {c.lower()}, namespace: cortex}}\n"
        f"spec: {{template: {{spec: {{containers: [{{name: x, image: '{c.lower()}:1'}}]}}}}}}"
        for c in COMPONENTS), "apps/cortex/all.yaml")
    index.sync("gitops", gitops)
    print(f"model load {load_s:.1f}s")
    print(f"index {report.total} chunks (~{words:.0f} words each, all cores): {index_s:.1f}s = "
          f"{report.total / index_s:.0f} chunks/s; re-sync unchanged: {noop_s:.2f}s, "
          f"re-embedded {again.embedded}")
    for threads in (1, 2):
        subprocess.run([sys.executable, __file__, "--queries", str(args.queries),
                        "--validate-phase", str(threads)], check=True)
        store.purge()
    for corpus in ("docs", "gitops", "improvements", "known_issues"):
        index.drop(corpus)


if __name__ == "__main__":
    main()
