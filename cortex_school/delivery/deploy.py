"""Deploy: committed → deployed once ArgoCD synced a revision containing the merge."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from cortex_school.delivery.health import Targets
from cortex_school.delivery.steps import (
    Deployer,
    Step,
    at_status,
    committed_manifests,
    rollback_under_way,
    step,
)
from cortex_school.models import Status, utcnow
from cortex_school.store.protocol import StateStore

# -- deploy ------------------------------------------------------------------------------

def run_deploy(store: StateStore, improvement_id: str, d: Deployer, *, actor: str,
               now: datetime | None = None) -> Step:
    now = now or utcnow()
    improvement = at_status(store, improvement_id, "deploy", Status.COMMITTED)
    if isinstance(improvement, Step):
        return improvement
    delivery, status = improvement.delivery, improvement.status.value
    if delivery.merge_pending:
        from cortex_school.delivery.merge import await_merge  # branch mode: has a person merged?

        merged = await_merge(store, improvement_id, d.repo, actor=actor, now=now)
        if isinstance(merged, Step):
            return merged
        delivery = merged
    if reason := rollback_under_way(improvement):
        return step(improvement_id, "deploy", "failed", status, reason)
    if not delivery.git_commit:
        return step(improvement_id, "deploy", "failed", status, "committed, but no commit is recorded")
    commit = delivery.git_commit
    apps = list(delivery.argocd_apps)  # discovered when it was committed
    requested = delivery.deploy_requested_at
    if requested is None:
        found, problems = d.apps_for(delivery.git_files)
        apps = apps or found
        if problems or not apps:
            return step(improvement_id, "deploy", "failed", status,
                        "; ".join(problems) or "no ArgoCD Application applies the committed files")
        targets = Targets.from_manifests(committed_manifests(d, delivery), [])
        baseline = {}
        for ns, svc in targets.services:
            p95 = d.metrics.p95_latency(ns, svc)
            if p95 is not None:
                baseline[f"{ns}/{svc}"] = p95
        for app in apps:
            if d.cluster.application(app) is not None:  # one an ApplicationSet is still to generate syncs itself
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
            # Not there yet (its ApplicationSet generates it from the new folder), or gone:
            # waited for up to the sync timeout like any sync.
            waiting.append(f"{app}: no such Application yet")
            continue
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
            return step(improvement_id, "deploy", "failed", status,
                         f"ArgoCD did not sync {commit[:12]} within {d.cfg.sync_timeout_seconds}s "
                         f"({'; '.join(waiting)})")
        return step(improvement_id, "deploy", "waiting", status,
                     f"waiting for ArgoCD: {'; '.join(waiting)}")
    result = store.transition(
        improvement_id, Status.DEPLOYED, actor=actor,
        reason=f"ArgoCD synced {', '.join(apps)} at {str(revision)[:12]} (contains {commit[:12]})",
        fields={"argocd_sync_revision": revision or "", "deployed_at": now.isoformat()})
    return step(improvement_id, "deploy", "done" if result.applied else "skipped",
                 Status.DEPLOYED.value if result.applied else result.previous,
                 f"synced at {str(revision)[:12]}")
