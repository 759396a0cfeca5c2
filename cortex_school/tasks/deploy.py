"""Deploy, verify and roll back: tasks that re-schedule themselves (countdown) while
they wait for ArgoCD or for the health window, so no worker ever sleeps.

A step that fails hands over to the rollback (``pipeline.compensate``); a cluster, git
or Prometheus that cannot be reached is a transient error (retried by the base task's
policy, then ``on_failure``: a rollback); a 401/403 is permanent and not retried.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cortex_school.celery import app
from cortex_school.delivery import Step, run_deploy, run_rollback, run_verify
from cortex_school.errors import Wait
from cortex_school.models import Status
from cortex_school.pipeline import advance, compensate
from cortex_school.runtime import get_deployer, get_settings, get_store
from cortex_school.tasks.base import PipelineTask


def _follow(step: Step, interval: float) -> dict[str, Any]:
    if step.outcome == "waiting":
        raise Wait(interval, step.detail)
    if step.outcome == "failed":
        compensate(step.improvement_id, step.detail)
    return step.model_dump()


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.deploy.deploy")
def deploy(self: PipelineTask, improvement_id: str) -> dict[str, Any]:
    """Hard-refresh the ArgoCD Application(s) and wait until they synced a revision that
    contains the improvement's merge commit (committed → deployed), then verify. A
    branch-mode commit goes on only once a person merged its branch (found here, by the
    sweep or by ``cortex-school deploy``); until then the step is skipped and says so."""
    checked = self.checked_id(improvement_id)
    step = run_deploy(get_store(), checked, get_deployer(), actor=self.actor())
    if step.outcome == "done":
        advance(Status.DEPLOYED, checked)
    return _follow(step, get_settings().deploy.poll_interval_seconds)


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.deploy.verify")
def verify(self: PipelineTask, improvement_id: str) -> dict[str, Any]:
    """Run the five health checks every HEALTH_CHECK_INTERVAL for HEALTH_CHECK_DURATION
    (deployed → verified); any failure rolls back."""
    checked = self.checked_id(improvement_id)
    step = run_verify(get_store(), checked, get_deployer(), actor=self.actor())
    return _follow(step, get_settings().deploy.health_check_interval_seconds)


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.deploy.rollback")
def rollback(self: PipelineTask, improvement_id: str, reason: str = "manual rollback") -> dict[str, Any]:
    """git revert the merge, push, hard-refresh, wait for the sync, check the system is
    healthy again; record, log, notify, feed the circuit breaker."""
    checked = self.checked_id(improvement_id)
    settings = get_settings()
    step = run_rollback(
        get_store(), checked, get_deployer(), reason=str(reason)[:2000], actor=self.actor(),
        breaker_limit=settings.approval.circuit_breaker_rollbacks,
        breaker_window=timedelta(seconds=settings.approval.circuit_breaker_window_seconds))
    if step.outcome == "waiting":
        raise Wait(settings.deploy.poll_interval_seconds, step.detail)
    return step.model_dump()
