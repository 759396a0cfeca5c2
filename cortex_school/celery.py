"""The Celery application (``celery -A cortex_school ...`` finds it here)."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

app = Celery("cortex_school")
app.config_from_object("celeryconfig")


@worker_ready.connect
def _serve_metrics(sender: object = None, **_: object) -> None:
    """With METRICS_PORT set, the worker's main process serves /metrics (read from Redis,
    so the pool's processes need nothing of their own)."""
    from cortex_school.settings import get_settings

    port = get_settings().metrics_port
    if port:
        from celeryconfig import ALL_QUEUES

        from cortex_school.metrics import serve
        from cortex_school.runtime import get_store

        serve(get_store(), ALL_QUEUES, port)
