"""Celery configuration: broker, serialisation, reliability, queues and routes.

Everything is read from :func:`cortex_school.settings.get_settings`; routing lives
here, not on task decorators. One queue per pipeline stage and one per expert, so
each can get its own workers (``cortex-school worker --queues expert.security``).
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from cortex_school.pipeline import (
    AGGREGATE,
    APPROVE,
    DEPLOY,
    EVALUATE,
    IMPLEMENT,
    REINDEX_GITOPS,
    ROLLBACK,
    ROUTE,
    SWEEP,
    VALIDATE,
    VERIFY,
)
from cortex_school.settings import EXPERTS, WORKERS, get_settings

_settings = get_settings()

broker_url = _settings.redis.url
result_backend = _settings.redis.url

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
result_expires = 3600
timezone = "UTC"
enable_utc = True

# A task is acknowledged only after it finished; a worker that dies mid-task hands it
# back. Safe because every stage is idempotent (it checks the status it acts on).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Redelivery of unacknowledged messages: above the longest hard time limit.
broker_transport_options = {
    "visibility_timeout": _settings.broker_visibility_timeout,
    "unacked_restore_interval": _settings.broker_restore_interval,
    "unacked_restore_throttle": _settings.broker_restore_throttle,
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
broker_connection_retry_on_startup = True

# Flower and `celery events` need these.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

imports = (
    "cortex_school.tasks.route",
    "cortex_school.tasks.evaluate",
    "cortex_school.tasks.validate",
    "cortex_school.tasks.approve",
    "cortex_school.tasks.implement",
    "cortex_school.tasks.index",
    "cortex_school.tasks.deploy",
    "cortex_school.tasks.sweep",
)

STAGE_QUEUES: tuple[str, ...] = ("route", "aggregate", "validate", "approve")
EXPERT_QUEUES: tuple[str, ...] = tuple(f"expert.{name}" for name in EXPERTS)
IMPLEMENT_QUEUES: tuple[str, ...] = tuple(f"implement.{name}" for name in WORKERS)
DEPLOY_QUEUES: tuple[str, ...] = ("deploy", "verify", "rollback")
# Through the approval gate (what runs without a GitOps repository).
PIPELINE_QUEUES: tuple[str, ...] = STAGE_QUEUES + EXPERT_QUEUES
# Every queue a task of this package consumes.
ALL_QUEUES: tuple[str, ...] = PIPELINE_QUEUES + IMPLEMENT_QUEUES + DEPLOY_QUEUES

task_queues = tuple(Queue(name, routing_key=name) for name in ALL_QUEUES)
task_default_queue = "route"
task_create_missing_queues = False

STATIC_ROUTES: dict[str, dict[str, str]] = {
    ROUTE: {"queue": "route"},
    AGGREGATE: {"queue": "aggregate"},
    VALIDATE: {"queue": "validate"},
    APPROVE: {"queue": "approve"},
    DEPLOY: {"queue": "deploy"},
    SWEEP: {"queue": "route"},
    VERIFY: {"queue": "verify"},
    ROLLBACK: {"queue": "rollback"},
    # On validate: its workers already hold the embedding model.
    REINDEX_GITOPS: {"queue": "validate"},
}


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Static routes, plus: an expert evaluation goes to its expert's queue."""
    if name == EVALUATE:
        expert = (kwargs or {}).get("expert")
        return {"queue": f"expert.{expert}" if expert in EXPERTS else "expert.architecture"}
    if name == IMPLEMENT:
        worker = (kwargs or {}).get("worker")
        return {"queue": f"implement.{worker}" if worker in WORKERS else "implement.architecture"}
    return STATIC_ROUTES.get(name)


task_routes = (route_task,)

# Soft limits raise inside the task so it can record why; hard limits kill it. Both come
# from TASK_TIME_LIMITS (the stage is the task name's last part).
task_annotations = {
    name: {"soft_time_limit": _settings.tasks.soft_limit(name.rsplit(".", 1)[-1]),
           "time_limit": _settings.tasks.hard_limit(name.rsplit(".", 1)[-1])}
    for name in (ROUTE, EVALUATE, AGGREGATE, VALIDATE, APPROVE, IMPLEMENT, REINDEX_GITOPS, DEPLOY,
                 VERIFY, ROLLBACK, SWEEP)
}

# `celery -A cortex_school beat`: the stuck-improvement sweep.
beat_schedule = {
    "sweep-stuck-improvements": {"task": SWEEP, "schedule": 60.0},
}
