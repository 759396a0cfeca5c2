"""Deploy, verify, roll back: the loop after a commit, as plain functions over the store.

Each function does one short step and says what should happen next: ``waiting``
(the task re-schedules itself with a countdown; no worker ever sleeps for minutes),
``done``, or ``failed`` (roll back). State lives on the improvement's hash, so any
step can be re-run or resumed by another worker.

committed → deployed (ArgoCD synced a revision containing the merge) → verified (all
five checks held for HEALTH_CHECK_DURATION) | failed (reverted, with the reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel

from cortex_school.cluster import ClusterError, ClusterTarget, path_covers
from cortex_school.cluster.metrics import MetricsSource
from cortex_school.health import HealthReport, Targets, run_checks
from cortex_school.models import Status, utcnow
from cortex_school.settings import DeploySettings, ServiceSettings
from cortex_school.store import RedisStore
from cortex_school.workers.gitops import GitOpsConflict, GitOpsRepo

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
GUARD = "rollback-guard"


class Step(BaseModel):
    improvement_id: str
    stage: str
    outcome: Literal["waiting", "done", "failed", "skipped", "missing"]
    status: str | None
    detail: str


@dataclass
class Deployer:
    cluster: ClusterTarget
    metrics: MetricsSource
    repo: GitOpsRepo
    cfg: DeploySettings
    services: ServiceSettings
    co_author: str

    def app_for(self, namespace: str) -> str:
        return self.cfg.argocd_app_template.format(namespace=namespace)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _namespaces(files: list[str]) -> list[str]:
    return sorted({f.split("/")[1] for f in files if f.startswith("apps/") and f.count("/") >= 2})


def sync_target_problems(cluster: ClusterTarget, namespaces: list[str], cfg: DeploySettings) -> list[str]:
    """Why ArgoCD would never apply files under ``apps/<namespace>/`` (empty: it will)."""
    problems = []
    for ns in namespaces:
        app_name = cfg.argocd_app_template.format(namespace=ns)
        app = cluster.application(app_name)
        if app is None:
            problems.append(f"no ArgoCD Application {cfg.argocd_namespace}/{app_name} for "
                            f"apps/{ns}/: nothing would apply these files")
        elif not path_covers(app, f"apps/{ns}"):
            problems.append(f"ArgoCD Application {app_name} syncs path {app.path!r}"
                            f"{' recursively' if app.recurse else ''}, which does not cover apps/{ns}/")
    return problems


def _manifests(d: Deployer, fields: dict[str, str]) -> list[dict[str, Any]]:
    """The improvement's committed manifests, from a clone synced now (each worker process
    has its own clone; one that missed the merge must not judge an empty change healthy)."""
    from cortex_school.workers.gitops import GitOpsError

    files = json.loads(fields.get("git_files") or "[]")
    d.repo.sync()
    texts = d.repo.read_files(fields["git_commit"], files)
    if len(texts) != len(files):
        raise GitOpsError(f"{len(files) - len(texts)} of the improvement's files are not readable "
                          f"at {fields['git_commit'][:12]}")
    return [doc for text in texts.values() for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def _dependencies(fields: dict[str, str]) -> list[str]:
    plan = json.loads(fields.get("plan") or "{}")
    return sorted({dep for r in plan.get("resources", []) for dep in r.get("dependencies", [])})


def _step(iid: str, stage: str, outcome: str, status: str | None, detail: str) -> Step:
    return Step(improvement_id=iid, stage=stage, outcome=outcome, status=status, detail=detail)  # type: ignore[arg-type]


def _fields_at(store: RedisStore, improvement_id: str, stage: str,
               expected: Status) -> dict[str, str] | Step:
    """The improvement's fields if it is at ``expected``; otherwise the step that says why not."""
    fields = store.raw_fields(improvement_id)
    if not fields:
        return _step(improvement_id, stage, "missing", None, "no such improvement")
    if fields["status"] != expected.value:
        return _step(improvement_id, stage, "skipped", fields["status"],
                     f"nothing to do: status is {fields['status']}, this stage acts on {expected.value}")
    return fields


def rollback_under_way(fields: dict[str, str]) -> str | None:
    """Why the improvement is being rolled back (revert made or a person asked), else None."""
    if not (fields.get("rollback_commit") or fields.get("rollback_requested")):
        return None
    return fields.get("failure_reason") or fields.get("rollback_requested") or "rollback under way"


# -- deploy ------------------------------------------------------------------------------

def run_deploy(store: RedisStore, improvement_id: str, d: Deployer, *, actor: str,
               now: datetime | None = None) -> Step:
    now = now or utcnow()
    fields = _fields_at(store, improvement_id, "deploy", Status.COMMITTED)
    if isinstance(fields, Step):
        return fields
    if fields.get("merge_pending") == "true":
        return _step(improvement_id, "deploy", "skipped", fields["status"],
                     f"branch {fields.get('git_branch')} is waiting for a person to merge it")
    if reason := rollback_under_way(fields):
        return _step(improvement_id, "deploy", "failed", fields["status"], reason)
    commit = fields["git_commit"]
    namespaces = _namespaces(json.loads(fields.get("git_files") or "[]"))
    apps = [d.app_for(ns) for ns in namespaces]
    requested = _parse(fields.get("deploy_requested_at"))
    if requested is None:
        problems = sync_target_problems(d.cluster, namespaces, d.cfg)
        if problems:
            return _step(improvement_id, "deploy", "failed", fields["status"], "; ".join(problems))
        targets = Targets.from_manifests(_manifests(d, fields), [])
        baseline = {}
        for ns, svc in targets.services:
            p95 = d.metrics.p95_latency(ns, svc)
            if p95 is not None:
                baseline[f"{ns}/{svc}"] = p95
        for app in apps:
            d.cluster.hard_refresh(app)
        store.set_fields(improvement_id, {"deploy_requested_at": now.isoformat(),
                                       "argocd_apps": json.dumps(apps),
                                       "health_baseline": json.dumps(baseline)})
        requested = now
    d.repo.sync()
    waiting = []
    revision = None
    for app in apps:
        state = d.cluster.application(app)
        if state is None:
            return _step(improvement_id, "deploy", "failed", fields["status"],
                         f"ArgoCD Application {app} disappeared")
        contains = state.revision is not None and (
            state.revision == commit or d.repo.is_ancestor(commit, state.revision))
        if not (contains and state.sync_status == "Synced"):
            waiting.append(f"{app}: {state.sync_status} at {str(state.revision)[:12]}")
        elif state.health == "Progressing":
            # Synced but still rolling out: health checks now would judge pods mid-start.
            waiting.append(f"{app}: Synced, health Progressing")
        revision = state.revision
    if waiting:
        if now - requested > timedelta(seconds=d.cfg.sync_timeout_seconds):
            return _step(improvement_id, "deploy", "failed", fields["status"],
                         f"ArgoCD did not sync {commit[:12]} within {d.cfg.sync_timeout_seconds}s "
                         f"({'; '.join(waiting)})")
        return _step(improvement_id, "deploy", "waiting", fields["status"],
                     f"waiting for ArgoCD: {'; '.join(waiting)}")
    result = store.transition(
        improvement_id, Status.DEPLOYED, actor=actor,
        reason=f"ArgoCD synced {', '.join(apps)} at {str(revision)[:12]} (contains {commit[:12]})",
        fields={"argocd_sync_revision": revision or "", "deployed_at": now.isoformat()})
    return _step(improvement_id, "deploy", "done" if result.applied else "skipped",
                 Status.DEPLOYED.value if result.applied else result.previous,
                 f"synced at {str(revision)[:12]}")


# -- verify ------------------------------------------------------------------------------

def run_verify(store: RedisStore, improvement_id: str, d: Deployer, *, actor: str,
               now: datetime | None = None) -> Step:
    now = now or utcnow()
    fields = _fields_at(store, improvement_id, "verify", Status.DEPLOYED)
    if isinstance(fields, Step):
        return fields
    if reason := rollback_under_way(fields):
        return _step(improvement_id, "verify", "failed", fields["status"], reason)
    deployed_at = _parse(fields.get("deployed_at")) or now
    targets = Targets.from_manifests(_manifests(d, fields), _dependencies(fields))
    baseline = json.loads(fields.get("health_baseline") or "{}")
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
        return _step(improvement_id, "verify", "failed", fields["status"],
                     "health check failed: " + "; ".join(f"{r.check}: {r.reason}" for r in report.failures))
    if now - deployed_at < timedelta(seconds=d.services.health_check_duration):
        return _step(improvement_id, "verify", "waiting", fields["status"],
                     f"healthy so far ({int((now - deployed_at).total_seconds())}s of "
                     f"{d.services.health_check_duration}s): {report.summary()}")
    from cortex_school.leases import release

    result = store.transition(
        improvement_id, Status.VERIFIED, actor=actor,
        reason=f"healthy for {d.services.health_check_duration}s: {report.summary()}"[:2000],
        fields={"health_checks_passed": "true", "verified_at": now.isoformat()})
    release(store, improvement_id)
    return _step(improvement_id, "verify", "done" if result.applied else "skipped",
                 Status.VERIFIED.value if result.applied else result.previous, report.summary())


# -- rollback ----------------------------------------------------------------------------

def notify(webhook: str | None, text: str) -> str | None:
    """A plain webhook POST (Slack-compatible); the error, if any, is returned, never raised."""
    if not webhook:
        return None
    try:
        response = httpx.post(webhook, json={"text": text}, timeout=5.0)
        return None if response.status_code < 300 else f"webhook answered {response.status_code}"
    except httpx.HTTPError as exc:
        return f"webhook unreachable: {type(exc).__name__}"


def _alert(store: RedisStore, d: Deployer, improvement_id: str, text: str, level: str) -> None:
    store.alert(improvement_id, text, level)
    error = notify(d.services.alert_slack_webhook, text)
    if error:
        store.set_fields(improvement_id, {"notify_error": error})


def _pause_auto_approval(store: RedisStore, why: str) -> None:
    store.set_flag("auto_approve_none", True, reason=why)


def run_rollback(store: RedisStore, improvement_id: str, d: Deployer, *, reason: str, actor: str,
                 breaker_limit: int, breaker_window: timedelta, now: datetime | None = None) -> Step:
    now = now or utcnow()
    fields = store.raw_fields(improvement_id)
    if not fields:
        return _step(improvement_id, "rollback", "missing", None, "no such improvement")
    status = fields["status"]
    if status == Status.FAILED.value:
        return _step(improvement_id, "rollback", "skipped", status,
                     f"already failed: {fields.get('failure_reason', '')}"[:500])
    if status not in (Status.COMMITTED.value, Status.DEPLOYED.value, Status.VERIFIED.value):
        return _step(improvement_id, "rollback", "skipped", status,
                     f"nothing to roll back: status is {status}")
    reason = fields.get("failure_reason") or reason
    title = fields.get("title", "")
    if not d.services.rollback_enabled:
        result = store.transition(improvement_id, Status.FAILED, actor=actor, reason=f"{reason} "
                                  "(ROLLBACK_ENABLED=false: flagged, not reverted)"[:2000],
                                  fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                          "rollback_status": "disabled"})
        _alert(store, d, improvement_id, f"Cortex Online School: {title} failed and was NOT rolled "
               f"back (ROLLBACK_ENABLED=false). Reason: {reason}", "warning")
        return _step(improvement_id, "rollback", "done" if result.applied else "skipped",
                     Status.FAILED.value, "flagged, not reverted")

    if fields.get("merge_pending") == "true":
        result = store.transition(improvement_id, Status.FAILED, actor=actor,
                                  reason=f"{reason} (branch never merged: nothing to revert)"[:2000],
                                  fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                          "rollback_status": "branch not merged; nothing reverted"})
        return _step(improvement_id, "rollback", "done" if result.applied else "skipped",
                     Status.FAILED.value, "branch never merged: nothing to revert")
    merge = fields.get("git_commit", "")
    apps = json.loads(fields.get("argocd_apps") or "[]") or [
        d.app_for(ns) for ns in _namespaces(json.loads(fields.get("git_files") or "[]"))]
    if not fields.get("rollback_commit"):
        try:
            revert, reused = d.repo.revert_improvement(improvement_id, merge, reason, d.co_author)
        except GitOpsConflict as exc:
            # A revert that cannot be made is the worst case: people must act now.
            _alert(store, d, improvement_id, f"CRITICAL: cannot revert {improvement_id}: {exc}",
                   "critical")
            _pause_auto_approval(store, f"revert of {improvement_id} failed: {exc}")
            result = store.transition(improvement_id, Status.FAILED, actor=actor,
                                      reason=f"{reason}; revert failed: {exc}"[:2000],
                                      fields={"failure_reason": reason[:2000], "failed_at": now.isoformat(),
                                              "rollback_status": f"revert failed: {exc}"[:500]})
            return _step(improvement_id, "rollback", "done", Status.FAILED.value, str(exc))
        for app in apps:
            try:
                d.cluster.hard_refresh(app)
            except ClusterError as exc:
                store.set_fields(improvement_id, {"rollback_refresh_error": str(exc)[:500]})
        store.set_fields(improvement_id, {"rollback_commit": revert, "failure_reason": reason[:2000],
                                       "rollback_started_at": now.isoformat(),
                                       "rollback_status": "reverted; waiting for ArgoCD"})
        return _step(improvement_id, "rollback", "waiting", status,
                     f"reverted as {revert[:12]}{' (existing revert)' if reused else ''}; "
                     f"waiting for ArgoCD to sync {', '.join(apps)}")

    revert = fields["rollback_commit"]
    started = _parse(fields.get("rollback_started_at")) or now
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
        return _step(improvement_id, "rollback", "waiting", status,
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
        return _step(improvement_id, "rollback", "skipped", result.previous, "already handled")
    from cortex_school.leases import release

    release(store, improvement_id)
    store.log_rollback(improvement_id, reason, at=now)
    store.count("rollbacks")
    store.count(f"rollbacks_by_reason:{rollback_reason_class(reason)}")
    store.observe("rollback_duration", max(0.0, (now - started).total_seconds()),
                  ROLLBACK_DURATION_BUCKETS)
    _alert(store, d, improvement_id,
           f"Cortex Online School: rollback performed\nImprovement: {title}\n"
           f"Source: {fields.get('video_id')}\nRelevance: {fields.get('relevance')}\n"
           f"Reason for rollback: {reason}\nRevert commit: {revert}\nSystem status: {after}",
           "warning" if healthy else "critical")
    if not healthy:
        _pause_auto_approval(store, f"system unhealthy after rolling back {improvement_id}")
    elif store.rollbacks_since(breaker_window, now) > breaker_limit:
        _pause_auto_approval(store, f"circuit breaker: more than {breaker_limit} rollbacks within "
                             f"{int(breaker_window.total_seconds())}s")
    return _step(improvement_id, "rollback", "done", Status.FAILED.value,
                 f"reverted as {revert[:12]}; system {after}")


def health_of(fields: dict[str, str]) -> HealthReport | None:
    raw = fields.get("health_report")
    return HealthReport.model_validate_json(raw) if raw else None
