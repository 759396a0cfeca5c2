"""Verify: deployed → verified once every health check held for HEALTH_CHECK_DURATION."""

from __future__ import annotations

from datetime import datetime, timedelta

from cortex_school.delivery.health import HealthReport, Targets, run_checks
from cortex_school.delivery.steps import (
    Deployer,
    Step,
    at_status,
    committed_manifests,
    planned_dependencies,
    rollback_under_way,
    step,
)
from cortex_school.models import Improvement, Status, utcnow
from cortex_school.store.leases import release
from cortex_school.store.protocol import StateStore

# -- verify ------------------------------------------------------------------------------

def run_verify(store: StateStore, improvement_id: str, d: Deployer, *, actor: str,
               now: datetime | None = None) -> Step:
    now = now or utcnow()
    improvement = at_status(store, improvement_id, "verify", Status.DEPLOYED)
    if isinstance(improvement, Step):
        return improvement
    delivery, status = improvement.delivery, improvement.status.value
    if reason := rollback_under_way(improvement):
        return step(improvement_id, "verify", "failed", status, reason)
    deployed_at = delivery.deployed_at or now
    targets = Targets.from_manifests(committed_manifests(d, delivery), planned_dependencies(delivery))
    baseline = delivery.health_baseline
    window = max(1, int((now - deployed_at).total_seconds()) or 1)
    report = run_checks(d.cluster, d.metrics, targets, baseline,
                        since_seconds=min(window, d.services.health_check_duration),
                        max_error_rate=d.cfg.max_error_rate, max_p95=d.cfg.max_p95_latency_seconds,
                        baseline_factor=d.cfg.baseline_latency_factor)
    store.set_fields(improvement_id, {
        "health_report": report.model_dump_json(), "health_checked_at": now.isoformat()})
    store.count(f"health_checks:{'pass' if report.healthy else 'fail'}")
    for r in report.results:
        store.count(f"health_check:{r.check}:{r.outcome}")
    if not report.healthy:
        return step(improvement_id, "verify", "failed", status,
                     "health check failed: " + "; ".join(f"{r.check}: {r.reason}" for r in report.failures))
    if now - deployed_at < timedelta(seconds=d.services.health_check_duration):
        return step(improvement_id, "verify", "waiting", status,
                     f"healthy so far ({int((now - deployed_at).total_seconds())}s of "
                     f"{d.services.health_check_duration}s): {report.summary()}")
    result = store.transition(
        improvement_id, Status.VERIFIED, actor=actor,
        reason=f"healthy for {d.services.health_check_duration}s: {report.summary()}"[:2000],
        fields={"health_checks_passed": "true", "verified_at": now.isoformat()})
    release(store, improvement_id)
    return step(improvement_id, "verify", "done" if result.applied else "skipped",
                 Status.VERIFIED.value if result.applied else result.previous, report.summary())


def health_of(improvement: Improvement) -> HealthReport | None:
    """The last health report recorded while verifying, if any."""
    raw = improvement.delivery.health_report
    return HealthReport.model_validate(raw) if raw else None
