"""Helpers for live tests: a real Celery worker subprocess on the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

from cortex_school.cli.demo import start_worker, stop_worker, wait_until_ready, wait_until_idle

__all__ = ["start_worker", "stop_worker", "wait_until_ready", "wait_until_idle", "celery_call",
           "LiveWorker", "LiveWorkers"]

LOG_TAIL = 3000  # characters of each worker's log printed at teardown


def celery_call(task: str, args: str, kwargs: str | None = None) -> str:
    """Run ``celery -A cortex_school call`` as a user would; returns the task id."""
    argv = [sys.executable, "-m", "celery", "-A", "cortex_school", "call", task, f"--args={args}"]
    if kwargs:
        argv.append(f"--kwargs={kwargs}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ.copy(),
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@dataclass
class LiveWorker:
    """One started worker: its node name, process and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)


class LiveWorkers:
    """What the ``live_worker`` fixture yields: call it to start a worker (ready when it
    returns); ``close`` stops every worker it started and prints their log tails.

    The broker's stale messages and the store's state are purged once, when the factory is
    created (before the module's own setup: indexing, remotes, fake servers), as the
    per-module fixtures did."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[LiveWorker] = []

    @staticmethod
    def purge(redis_url: str) -> None:
        from cortex_school.celery import app
        from cortex_school.store import RedisStore

        app.control.purge()  # stale messages from an earlier, interrupted run
        RedisStore.from_url(redis_url).purge()

    def __call__(self, *, queues: Iterable[str], env: dict[str, str] | None = None,
                 concurrency: int = 2, name_suffix: str = "") -> LiveWorker:
        """Start ``pytest[-SUFFIX]-PID@localhost`` on ``queues`` with ``env`` on top of the
        test environment (whose REDIS_DB is the test database), and wait until it answers."""
        node = f"pytest-{name_suffix}-{os.getpid()}" if name_suffix else f"pytest-{os.getpid()}"
        name = f"{node}@localhost"
        if any(w.name == name for w in self.started):
            raise ValueError(f"a worker named {name} is already running: give a name_suffix")
        # The worker must use the test database, whatever the caller's env holds.
        worker_env = {**(env or {}), "REDIS_DB": os.environ["REDIS_DB"]}
        log_path = self.log_dir / f"{node}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        proc = start_worker(queues=list(queues), concurrency=concurrency, name=name, log=log,
                            env=worker_env)
        worker = LiveWorker(name, proc, log_path, log)
        self.started.append(worker)  # stopped at teardown even if it never gets ready
        wait_until_ready(name, proc)
        return worker

    def close(self) -> None:
        try:
            for worker in self.started:
                try:
                    stop_worker(worker.proc)
                except Exception as exc:  # noqa: BLE001 - stop the others all the same
                    print(f"stopping {worker.name} failed: {exc!r}")
        finally:
            for worker in self.started:
                worker._log.close()
                print(f"--- {worker.name} log (tail) ---")
                print(worker.log_path.read_text(errors="replace")[-LOG_TAIL:])
            self.started.clear()
