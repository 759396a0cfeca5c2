"""Celery configuration: broker, serialisation, reliability, queues and routes.

Everything is read from :func:`cortex_school.settings.get_settings`; routing lives
here, not on task decorators. One queue per pipeline stage and one per expert, so
each can get its own workers (``cortex-school worker --queues expert.security``).
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from cortex_school.settings import EXPERTS, get_settings
from cortex_school.workers.plan import WORKERS

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

EVALUATE_TASK = "cortex_school.tasks.evaluate.evaluate"
IMPLEMENT_TASK = "cortex_school.tasks.implement.implement"
STATIC_ROUTES: dict[str, dict[str, str]] = {
    "cortex_school.tasks.route.route": {"queue": "route"},
    "cortex_school.tasks.evaluate.aggregate": {"queue": "aggregate"},
    "cortex_school.tasks.validate.validate": {"queue": "validate"},
    "cortex_school.tasks.approve.approve": {"queue": "approve"},
    "cortex_school.tasks.deploy.deploy": {"queue": "deploy"},
    "cortex_school.tasks.sweep.sweep_stuck": {"queue": "route"},
    "cortex_school.tasks.deploy.verify": {"queue": "verify"},
    "cortex_school.tasks.deploy.rollback": {"queue": "rollback"},
    # On validate: its workers already hold the embedding model.
    "cortex_school.tasks.index.reindex_gitops": {"queue": "validate"},
}


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Static routes, plus: an expert evaluation goes to its expert's queue."""
    if name == EVALUATE_TASK:
        expert = (kwargs or {}).get("expert")
        return {"queue": f"expert.{expert}" if expert in EXPERTS else "expert.architecture"}
    if name == IMPLEMENT_TASK:
        worker = (kwargs or {}).get("worker")
        return {"queue": f"implement.{worker}" if worker in WORKERS else "implement.architecture"}
    return STATIC_ROUTES.get(name)


task_routes = (route_task,)

# Soft limits raise inside the task so it can record why; hard limits kill it.
task_annotations = {
    "cortex_school.tasks.route.route": {"soft_time_limit": 30, "time_limit": 60},
    EVALUATE_TASK: {"soft_time_limit": 240, "time_limit": 300},
    "cortex_school.tasks.evaluate.aggregate": {"soft_time_limit": 30, "time_limit": 60},
    "cortex_school.tasks.validate.validate": {"soft_time_limit": 90, "time_limit": 120},
    "cortex_school.tasks.approve.approve": {"soft_time_limit": 30, "time_limit": 60},
    IMPLEMENT_TASK: {"soft_time_limit": 240, "time_limit": 300},
    "cortex_school.tasks.index.reindex_gitops": {"soft_time_limit": 240, "time_limit": 300},
    "cortex_school.tasks.deploy.deploy": {"soft_time_limit": 120, "time_limit": 180},
    "cortex_school.tasks.deploy.verify": {"soft_time_limit": 120, "time_limit": 180},
    "cortex_school.tasks.deploy.rollback": {"soft_time_limit": 240, "time_limit": 300},
}

# `celery -A cortex_school beat`: the stuck-improvement sweep.
beat_schedule = {
    "sweep-stuck-improvements": {"task": "cortex_school.tasks.sweep.sweep_stuck", "schedule": 60.0},
}
