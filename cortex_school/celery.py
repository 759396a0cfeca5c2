"""The Celery application (``celery -A cortex_school ...`` finds it here)."""

from __future__ import annotations

from celery import Celery

app = Celery("cortex_school")
app.config_from_object("celeryconfig")
