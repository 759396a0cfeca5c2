"""Shared fixtures. Tests use their own Redis database number (default 15), so they
never touch the demo's or a user's data; the keys inside it are the design's."""

from __future__ import annotations

import os

# Before anything imports the settings (they are cached per process).
TEST_DB = os.environ.setdefault("CORTEX_TEST_REDIS_DB", "15")
os.environ["REDIS_DB"] = TEST_DB
os.environ.pop("ANTHROPIC_API_KEY", None)
os.environ.pop("LLMD_ENDPOINT", None)

from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402

from cortex_school.settings import IngestSettings, get_settings  # noqa: E402
from cortex_school.store import RedisStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "proposals"


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture
def caps() -> IngestSettings:
    return IngestSettings()


@pytest.fixture
def store(settings) -> Iterator[RedisStore]:
    """The real Redis, emptied of pipeline state before each test."""
    s = RedisStore.from_url(settings.redis.url)
    s.purge()
    yield s


@pytest.fixture(params=["redis", "memory"])
def any_store(request):
    """Each state store in turn: domain functions must behave the same on both."""
    if request.param == "memory":
        from cortex_school.store.memory import MemoryStore

        return MemoryStore()
    return request.getfixturevalue("store")


@pytest.fixture(scope="module")
def live_worker(tmp_path_factory, settings):
    """Factory for real Celery worker subprocesses, shared by the live modules.

    ``live_worker(queues=..., env=None, concurrency=2, name_suffix="")`` starts the worker
    ``pytest[-SUFFIX]-PID@localhost`` on the test database with its log in a tmp dir, waits
    until it answers a ping and returns a ``tests.live.LiveWorker`` (``.name``, ``.proc``,
    ``.log_path``). Call it several times for several workers (distinct suffixes). Stale
    broker messages and store state are purged when this fixture is set up, i.e. before the
    requesting fixture's own setup; every started worker is stopped at module teardown and
    the tail of its log printed."""
    from tests.live import LiveWorkers

    LiveWorkers.purge(settings.redis.url)
    factory = LiveWorkers(tmp_path_factory.mktemp("workers"))
    try:
        yield factory
    finally:
        factory.close()
