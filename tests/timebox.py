"""A time box for tests of hostile input: fail (not hang) when a block takes too long."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Budget(Exception):
    pass


@contextmanager
def within(seconds: float = 2.0) -> Iterator[None]:
    """Fail (not hang) when the block takes longer than ``seconds``. SIGALRM interrupts
    the regex engine too; pytest-timeout's own timer is restored afterwards."""
    def expired(signum, frame):
        raise Budget(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    started = time.monotonic()
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay:
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - started), 0.001))
