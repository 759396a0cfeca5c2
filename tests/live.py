"""Helpers for live tests: a real Celery worker subprocess on the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cortex_school.demo import start_worker, stop_worker, wait_until_ready, wait_until_idle

__all__ = ["start_worker", "stop_worker", "wait_until_ready", "wait_until_idle", "celery_call"]


def celery_call(task: str, args: str, kwargs: str | None = None) -> str:
    """Run ``celery -A cortex_school call`` as a user would; returns the task id."""
    argv = [sys.executable, "-m", "celery", "-A", "cortex_school", "call", task, f"--args={args}"]
    if kwargs:
        argv.append(f"--kwargs={kwargs}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ.copy(),
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]
