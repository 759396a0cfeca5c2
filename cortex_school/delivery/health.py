"""The design's five health checks over the resources an improvement created.

Each check returns a :class:`CheckResult` whose outcome is ``passed``, ``failed``,
``not_applicable`` (e.g. no HTTP metrics for a CronJob) or ``insufficient_evidence``
(a metric with no data). Only ``failed`` fails a deployment; the others are recorded
as what they are, never as a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cortex_school.clients.cluster import ClusterTarget
from cortex_school.clients.cluster.metrics import MetricsSource
from cortex_school.models import utcnow

Outcome = Literal["passed", "failed", "not_applicable", "insufficient_evidence"]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
LOG_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ERROR", re.compile(r"\bERROR\b|level=error\b|\"level\":\s*\"error\"")),
    ("FATAL", re.compile(r"\bFATAL\b|level=fatal\b|\"level\":\s*\"fatal\"")),
    ("panic:", re.compile(r"panic:")),
    ("CrashLoopBackOff", re.compile(r"CrashLoopBackOff")),
    ("OOMKilled", re.compile(r"OOMKilled")),
)


class CheckResult(BaseModel):
    check: str
    outcome: Outcome
    reason: str


class HealthReport(BaseModel):
    results: list[CheckResult]
    checked_at: datetime = Field(default_factory=utcnow)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def healthy(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return "; ".join(f"{r.check}: {r.outcome} ({r.reason})" for r in self.results)


@dataclass
class Workload:
    kind: str
    namespace: str
    name: str
    selector: dict[str, str]
    replicas: int


@dataclass
class Targets:
    """What an improvement created, read from its committed manifests."""

    workloads: list[Workload] = field(default_factory=list)
    services: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name)
    batch: list[tuple[str, str, str]] = field(default_factory=list)  # CronJobs, Jobs
    dependencies: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_manifests(cls, manifests: list[dict[str, Any]], dependencies: list[str]) -> "Targets":
        t = cls()
        namespaces = []
        for m in manifests:
            meta = m.get("metadata") or {}
            ns, name, kind = meta.get("namespace", ""), meta.get("name", ""), m.get("kind", "")
            namespaces.append(ns)
            spec = m.get("spec") or {}
            if kind in WORKLOAD_KINDS:
                selector = (spec.get("selector") or {}).get("matchLabels") or {}
                t.workloads.append(Workload(kind, ns, name, dict(selector),
                                            1 if kind == "DaemonSet" else spec.get("replicas", 1)))
            elif kind == "Service" and spec.get("clusterIP") != "None":
                t.services.append((ns, name))
            elif kind in ("CronJob", "Job"):
                t.batch.append((kind, ns, name))
        default_ns = namespaces[0] if namespaces else ""
        for dep in dependencies:
            ns, sep, name = dep.partition("/")
            t.dependencies.append((ns, name) if sep else (default_ns, dep))
        return t


def check_pods(cluster: ClusterTarget, t: Targets) -> CheckResult:
    if not t.workloads:
        return CheckResult(check="pods", outcome="not_applicable", reason="no workloads created")
    problems, seen = [], 0
    for w in t.workloads:
        pods = cluster.pods(w.namespace, w.selector)
        seen += len(pods)
        if not pods and w.replicas > 0:
            problems.append(f"{w.kind} {w.namespace}/{w.name} has no pods")
        for p in pods:
            if p.waiting_reason == "CrashLoopBackOff":
                problems.append(f"pod {p.name} is in CrashLoopBackOff ({p.restarts} restarts)")
            elif p.terminated_reason == "OOMKilled":
                problems.append(f"pod {p.name} was OOMKilled")
            elif p.phase != "Running":
                problems.append(f"pod {p.name} is {p.phase}")
            elif not p.ready:
                problems.append(f"pod {p.name} is not ready")
    if problems:
        return CheckResult(check="pods", outcome="failed", reason="; ".join(problems[:10]))
    return CheckResult(check="pods", outcome="passed", reason=f"{seen} pod(s) running and ready")


def check_readiness(cluster: ClusterTarget, t: Targets) -> CheckResult:
    """Ready replicas == desired for Deployments/StatefulSets, and every Service the
    improvement created has ready endpoints (a Service selecting nothing serves nothing)."""
    scaled = [w for w in t.workloads if w.kind in ("Deployment", "StatefulSet")]
    if not scaled and not t.services:
        return CheckResult(check="readiness", outcome="not_applicable",
                           reason="no Deployment, StatefulSet or Service created")
    problems = []
    for ns, svc in t.services:
        ready = cluster.endpoints(ns, svc)
        if not ready:
            problems.append(f"Service {ns}/{svc} has no ready endpoints"
                            if ready == 0 else f"Service {ns}/{svc} not found")
    for w in scaled:
        state = cluster.workload(w.kind, w.namespace, w.name)
        if state is None:
            problems.append(f"{w.kind} {w.namespace}/{w.name} not found")
        elif state[1] < state[0]:
            problems.append(f"{w.kind} {w.namespace}/{w.name}: {state[1]}/{state[0]} ready")
    if problems:
        return CheckResult(check="readiness", outcome="failed", reason="; ".join(problems))
    return CheckResult(check="readiness", outcome="passed",
                       reason=f"{len(scaled)} workload(s) with all replicas ready, "
                       f"{len(t.services)} Service(s) with ready endpoints")


def check_metrics(metrics: MetricsSource, t: Targets, baseline: dict[str, float], *,
                  max_error_rate: float, max_p95: float, baseline_factor: float) -> CheckResult:
    if not t.services:
        what = ", ".join(f"{k} {n}" for k, _, n in t.batch) or "nothing serving HTTP"
        return CheckResult(check="metrics", outcome="not_applicable",
                           reason=f"no Service created ({what}): no HTTP metrics to judge")
    problems, missing, good = [], [], []
    for ns, svc in t.services:
        rate = metrics.error_rate(ns, svc)
        p95 = metrics.p95_latency(ns, svc)
        if rate is None or p95 is None:
            missing.append(f"{ns}/{svc} ({'error rate' if rate is None else 'p95 latency'} has no data)")
        if rate is not None and rate > max_error_rate:
            problems.append(f"{ns}/{svc} error rate {rate:.1%} > {max_error_rate:.0%}")
        if p95 is not None:
            base = baseline.get(f"{ns}/{svc}")
            if p95 > max_p95:
                problems.append(f"{ns}/{svc} p95 latency {p95:.2f}s > {max_p95:.1f}s")
            elif base and p95 > baseline_factor * base:
                problems.append(f"{ns}/{svc} p95 latency {p95:.2f}s > {baseline_factor:g}x baseline "
                                f"{base:.2f}s")
        if rate is not None and p95 is not None:
            good.append(f"{ns}/{svc} {rate:.1%} errors, p95 {p95:.2f}s")
    if problems:
        return CheckResult(check="metrics", outcome="failed", reason="; ".join(problems))
    if missing:
        return CheckResult(check="metrics", outcome="insufficient_evidence",
                           reason="no data for " + "; ".join(missing))
    return CheckResult(check="metrics", outcome="passed", reason="; ".join(good))


def check_logs(cluster: ClusterTarget, t: Targets, since_seconds: int) -> CheckResult:
    if not t.workloads:
        return CheckResult(check="logs", outcome="not_applicable", reason="no workloads created")
    found = []
    for w in t.workloads:
        for pod in cluster.pods(w.namespace, w.selector):
            text = cluster.logs(w.namespace, pod.name, since_seconds, pod.containers)
            for label, pattern in LOG_PATTERNS:
                hits = len(pattern.findall(text))
                if hits:
                    found.append(f"{hits}x {label} in logs of {pod.name}")
    if found:
        return CheckResult(check="logs", outcome="failed", reason="; ".join(found[:10]))
    return CheckResult(check="logs", outcome="passed",
                       reason=f"no ERROR/FATAL/panic/CrashLoopBackOff/OOMKilled in the last {since_seconds}s")


def check_dependencies(cluster: ClusterTarget, t: Targets) -> CheckResult:
    if not t.dependencies:
        return CheckResult(check="dependencies", outcome="not_applicable",
                           reason="the plan names no dependencies")
    problems, ok = [], []
    for ns, name in t.dependencies:
        ready = cluster.endpoints(ns, name)
        if ready is None:
            problems.append(f"dependency {ns}/{name}: no such Service")
        elif ready == 0:
            problems.append(f"dependency {ns}/{name}: no ready endpoints")
        else:
            ok.append(f"{ns}/{name} ({ready} ready)")
    if problems:
        return CheckResult(check="dependencies", outcome="failed", reason="; ".join(problems))
    return CheckResult(check="dependencies", outcome="passed", reason="reachable: " + ", ".join(ok))


def run_checks(cluster: ClusterTarget, metrics: MetricsSource, t: Targets, baseline: dict[str, float],
               *, since_seconds: int, max_error_rate: float, max_p95: float,
               baseline_factor: float) -> HealthReport:
    return HealthReport(results=[
        check_pods(cluster, t),
        check_readiness(cluster, t),
        check_metrics(metrics, t, baseline, max_error_rate=max_error_rate, max_p95=max_p95,
                      baseline_factor=baseline_factor),
        check_logs(cluster, t, since_seconds),
        check_dependencies(cluster, t),
    ])
