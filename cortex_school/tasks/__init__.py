"""Thin Celery tasks, one module per stage: validate the payload, call the stage
function, return its outcome as JSON. Retries, waits and failures follow the one policy
in :mod:`cortex_school.tasks.base`; what runs next is decided by :mod:`cortex_school.pipeline`."""

from __future__ import annotations

from celery.signals import worker_ready


@worker_ready.connect
def _serve_metrics(sender: object = None, **_: object) -> None:
    """With METRICS_PORT set, the worker's main process serves /metrics (read from Redis,
    so the pool's processes need nothing of their own)."""
    from cortex_school.settings import get_settings

    port = get_settings().metrics_port
    if port:
        from celeryconfig import ALL_QUEUES
        from cortex_school.alerts import exporter_limits, queue_consumers, serve
        from cortex_school.runtime import get_store

        limits, breaker = exporter_limits(get_settings())
        serve(get_store(), ALL_QUEUES, port, limits=limits, breaker=breaker,
              consumers=lambda: queue_consumers(ALL_QUEUES))
