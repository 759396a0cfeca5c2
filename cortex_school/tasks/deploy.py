"""Deploy, verify and roll back: tasks that re-schedule themselves (countdown) while
they wait for ArgoCD or for the health window, so no worker ever sleeps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cortex_school.celery import app
from cortex_school.cluster import ClusterError
from cortex_school.deployment import Step, run_deploy, run_rollback, run_verify
from cortex_school.runtime import get_deployer, get_settings, get_store
from cortex_school.tasks.base import UNBOUNDED, PipelineTask
from cortex_school.workers.gitops import GitOpsError

VERIFY = "cortex_school.tasks.deploy.verify"
ROLLBACK = "cortex_school.tasks.deploy.rollback"
# Cluster or git unreachable: retried this often (with backoff) before a person is asked.
UNREACHABLE_RETRIES = 10


def _unreachable(task: PipelineTask, exc: Exception, kwargs: dict[str, Any]) -> None:
    failures = kwargs.get("failures", 0)
    if failures >= UNREACHABLE_RETRIES:
        raise exc  # on_failure records it and sends the improvement to a person
    raise task.retry(countdown=min(300, 5 * 2 ** failures), max_retries=UNBOUNDED,
                     kwargs={**kwargs, "failures": failures + 1}, exc=exc)


def _follow(task: PipelineTask, step: Step, interval: float, kwargs: dict[str, Any]) -> dict[str, Any]:
    if step.outcome == "waiting":
        raise task.retry(countdown=interval, max_retries=UNBOUNDED, kwargs={**kwargs, "failures": 0})
    if step.outcome == "failed":
        app.send_task(ROLLBACK, args=(step.improvement_id,), kwargs={"reason": step.detail})
    return step.model_dump()


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.deploy.deploy")
def deploy(self: PipelineTask, improvement_id: str, failures: int = 0) -> dict[str, Any]:
    """Hard-refresh the ArgoCD Application(s) and wait until they synced a revision that
    contains the improvement's merge commit (committed → deployed), then verify."""
    checked = self.checked_id(improvement_id)
    cfg = get_settings().deploy
    try:
        step = run_deploy(get_store(), checked, get_deployer(), actor=self.actor())
    except (ClusterError, GitOpsError) as exc:
        _unreachable(self, exc, {"failures": failures})
    if step.outcome == "done":
        app.send_task(VERIFY, args=(checked,))
    return _follow(self, step, cfg.poll_interval_seconds, {})


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.deploy.verify")
def verify(self: PipelineTask, improvement_id: str, failures: int = 0) -> dict[str, Any]:
    """Run the five health checks every HEALTH_CHECK_INTERVAL for HEALTH_CHECK_DURATION
    (deployed → verified); any failure rolls back."""
    checked = self.checked_id(improvement_id)
    cfg = get_settings().deploy
    try:
        step = run_verify(get_store(), checked, get_deployer(), actor=self.actor())
    except (ClusterError, GitOpsError) as exc:
        _unreachable(self, exc, {"failures": failures})
    return _follow(self, step, cfg.health_check_interval_seconds, {})


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.deploy.rollback")
def rollback(self: PipelineTask, improvement_id: str, reason: str = "manual rollback",
             failures: int = 0) -> dict[str, Any]:
    """git revert the merge, push, hard-refresh, wait for the sync, check the system is
    healthy again; record, log, notify, feed the circuit breaker."""
    checked = self.checked_id(improvement_id)
    settings = get_settings()
    try:
        step = run_rollback(
            get_store(), checked, get_deployer(), reason=str(reason)[:2000], actor=self.actor(),
            breaker_limit=settings.approval.circuit_breaker_rollbacks,
            breaker_window=timedelta(seconds=settings.approval.circuit_breaker_window_seconds))
    except (ClusterError, GitOpsError) as exc:
        _unreachable(self, exc, {"reason": reason, "failures": failures})
    if step.outcome == "waiting":
        raise self.retry(countdown=settings.deploy.poll_interval_seconds, max_retries=UNBOUNDED,
                         kwargs={"reason": reason, "failures": 0})
    return step.model_dump()
