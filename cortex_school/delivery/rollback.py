"""Rollback: git revert the merge, push, wait for ArgoCD, check the system, record,
notify, feed the circuit breaker."""

from __future__ import annotations

from datetime import datetime, timedelta

from cortex_school.clients.cluster import ClusterError
from cortex_school.clients.gitops import GitOpsConflict
from cortex_school.delivery.notify import alert, pause_auto_approval
from cortex_school.delivery.steps import Deployer, Step, loaded, step
from cortex_school.models import Status, utcnow
from cortex_school.store.leases import release
from cortex_school.store.protocol import StateStore

ROLLBACK_DURATION_BUCKETS: tuple[float, ...] = (5, 15, 30, 60, 120, 300, 600, 1200, 3600)


def rollback_reason_class(reason: str) -> str:
    """A small, fixed label set for cortex_rollbacks_total{reason}."""
    lowered = reason.lower()
    if lowered.startswith("manual rollback"):
        return "manual"
    if "did not sync" in lowered:
        return "sync_timeout"
    for check in ("pods", "readiness", "metrics", "logs", "dependencies"):
        if f"{check}:" in lowered:
            return f"health_{check}"
    return "other"


def run_rollback(store: StateStore, improvement_id: str, d: Deployer, *, reason: str, actor: str,
                 breaker_limit: int, breaker_window: timedelta, now: datetime | None = None) -> Step:
    now = now or utcnow()
    improvement = loaded(store, improvement_id, "rollback")
    if isinstance(improvement, Step):
        return improvement
    delivery, status = improvement.delivery, improvement.status.value
    if status == Status.FAILED.value:
        return step(improvement_id, "rollback", "skipped", status,
                    f"already failed: {delivery.failure_reason or ''}"[:500])
    if status not in (Status.COMMITTED.value, Status.DEPLOYED.value, Status.VERIFIED.value):
        return step(improvement_id, "rollback", "skipped", status,
                     f"nothing to roll back: status is {status}")
    reason = delivery.failure_reason or reason
    title = improvement.title
    if not d.services.rollback_enabled:
        result = store.transition(improvement_id, Status.FAILED, actor=actor, reason=f"{reason} "
                                  "(ROLLBACK_ENABLED=false: flagged, not reverted)"[:2000],
                                  fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                          "rollback_status": "disabled"})
        alert(store, d, improvement_id, f"Cortex Online School: {title} failed and was NOT rolled "
               f"back (ROLLBACK_ENABLED=false). Reason: {reason}", "warning")
        return step(improvement_id, "rollback", "done" if result.applied else "skipped",
                     Status.FAILED.value, "flagged, not reverted")

    if delivery.merge_pending:
        result = store.transition(improvement_id, Status.FAILED, actor=actor,
                                  reason=f"{reason} (branch never merged: nothing to revert)"[:2000],
                                  fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                          "rollback_status": "branch not merged; nothing reverted"})
        return step(improvement_id, "rollback", "done" if result.applied else "skipped",
                     Status.FAILED.value, "branch never merged: nothing to revert")
    merge = delivery.git_commit or ""
    apps = delivery.argocd_apps or d.apps_for(delivery.git_files)[0]
    if not delivery.rollback_commit:
        try:
            revert, reused = d.repo.revert_improvement(improvement_id, merge, reason, d.co_author)
        except GitOpsConflict as exc:
            # A revert that cannot be made is the worst case: people must act now.
            alert(store, d, improvement_id, f"CRITICAL: cannot revert {improvement_id}: {exc}",
                   "critical")
            pause_auto_approval(store, f"revert of {improvement_id} failed: {exc}")
            result = store.transition(improvement_id, Status.FAILED, actor=actor,
                                      reason=f"{reason}; revert failed: {exc}"[:2000],
                                      fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                              "rollback_status": f"revert failed: {exc}"[:500]})
            return step(improvement_id, "rollback", "done", Status.FAILED.value, str(exc))
        for app in apps:
            try:
                d.cluster.hard_refresh(app)
            except ClusterError as exc:
                store.set_fields(improvement_id, {"rollback_refresh_error": str(exc)[:500]})
        store.set_fields(improvement_id, {"rollback_commit": revert, "failure_reason": reason[:2000],
                                       "rollback_started_at": now.isoformat(),
                                       "rollback_status": "reverted; waiting for ArgoCD"})
        return step(improvement_id, "rollback", "waiting", status,
                     f"reverted as {revert[:12]}{' (existing revert)' if reused else ''}; "
                     f"waiting for ArgoCD to sync {', '.join(apps)}")

    revert = delivery.rollback_commit
    started = delivery.rollback_started_at or now
    d.repo.sync()
    pending = []
    degraded = []
    for app in apps:
        state = d.cluster.application(app)
        if state is None or state.revision is None or not (
                state.revision == revert or d.repo.is_ancestor(revert, state.revision)) \
                or state.sync_status != "Synced":
            pending.append(app)
        elif state.health not in ("Healthy", "Progressing"):
            degraded.append(f"{app} is {state.health}")
    timed_out = now - started > timedelta(seconds=d.cfg.sync_timeout_seconds)
    if pending and not timed_out:
        return step(improvement_id, "rollback", "waiting", status,
                     f"waiting for ArgoCD to sync the revert on {', '.join(pending)}")
    healthy = not pending and not degraded
    after = "healthy again" if healthy else (
        f"STILL UNHEALTHY after the rollback: {'; '.join(degraded) or 'revert not synced: ' + ', '.join(pending)}")
    result = store.transition(improvement_id, Status.FAILED, actor=actor,
                              reason=f"rolled back ({revert[:12]}): {reason}; system {after}"[:2000],
                              fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                      "rollback_status": after[:500],
                                      "rollback_healthy": "true" if healthy else "false"})
    if not result.applied:
        return step(improvement_id, "rollback", "skipped", result.previous, "already handled")
    release(store, improvement_id)
    store.log_rollback(improvement_id, reason, at=now)
    store.count("rollbacks")
    store.count(f"rollbacks_by_reason:{rollback_reason_class(reason)}")
    store.observe("rollback_duration", max(0.0, (now - started).total_seconds()),
                  ROLLBACK_DURATION_BUCKETS)
    alert(store, d, improvement_id,
           f"Cortex Online School: rollback performed\nImprovement: {title}\n"
           f"Source: {improvement.video_id}\nRelevance: {improvement.relevance}\n"
           f"Reason for rollback: {reason}\nRevert commit: {revert}\nSystem status: {after}",
           "warning" if healthy else "critical")
    if not healthy:
        pause_auto_approval(store, f"system unhealthy after rolling back {improvement_id}")
    elif store.rollbacks_since(breaker_window, now) > breaker_limit:
        pause_auto_approval(store, f"circuit breaker: more than {breaker_limit} rollbacks within "
                             f"{int(breaker_window.total_seconds())}s")
    return step(improvement_id, "rollback", "done", Status.FAILED.value,
                 f"reverted as {revert[:12]}; system {after}")
