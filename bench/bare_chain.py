"""A bare Celery app with no-op tasks, configured like cortex_school's (same broker, same
reliability settings), for the side-by-side pipeline benchmark."""

from __future__ import annotations

import time

import celeryconfig
from celery import Celery

bare = Celery("bare_chain")
bare.conf.update(
    broker_url=celeryconfig.broker_url, result_backend=celeryconfig.result_backend,
    task_serializer="json", accept_content=["json"], result_serializer="json",
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
    broker_transport_options=celeryconfig.broker_transport_options,
    task_default_queue="bare", worker_send_task_events=True, task_send_sent_event=True,
    task_track_started=True,
)


@bare.task(name="bare.step")
def step(token: str) -> str:
    return token


@bare.task(name="bare.last")
def last(token: str, started: float) -> str:
    from redis import Redis

    r = Redis.from_url(celeryconfig.broker_url)
    r.rpush("bench:bare:done", f"{token} {started} {time.time()}")
    return token
