"""A real worker meets a GitOps remote that does not exist: after its retries the
improvement is with a person, not in `implementing` forever (real Redis, real worker)."""

from __future__ import annotations

import time

import pytest

from celeryconfig import IMPLEMENT_QUEUES
from cortex_school.models import Status
from cortex_school.pipeline import implement_signature
from tests.factories import make_improvement

pytestmark = pytest.mark.live


def test_a_bad_remote_moves_the_improvement_to_a_person_after_the_retries(live_worker, store, tmp_path):
    """GIVEN a worker whose GITOPS_REMOTE is a path that does not exist (2 retries, short
    backoff) WHEN an approved improvement is implemented THEN it ends in pending_review
    with the git error and what to do, and the worker's log says it gave up."""
    missing = tmp_path / "no-such-remote.git"
    worker = live_worker(queues=IMPLEMENT_QUEUES, concurrency=1, name_suffix="badremote", env={
        "GITOPS_REMOTE": str(missing), "GITOPS_WORKDIR": str(tmp_path / "clones"),
        "TASK_MAX_RETRIES": "2", "TASK_RETRY_BACKOFF": "0.2", "RAG_ENABLED": "false"})
    imp = make_improvement("Alert when Qdrant is down for five minutes", category="monitoring")
    store.create(imp, actor="t", reason="t")
    for status in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
        store.transition(imp.id, status, actor="t", reason="t")
    implement_signature(store.get(imp.id)).apply_async()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and store.field(imp.id, "status") != Status.PENDING_REVIEW.value:
        time.sleep(0.5)
    fields = store.raw_fields(imp.id)
    assert fields["status"] == Status.PENDING_REVIEW.value, fields.get("status")
    assert fields["review_reason"].startswith("infrastructure error in implement, gave up after 3 attempts")
    assert "does not exist" in fields["review_reason"]
    assert "implementing" in [e.to_status for e in store.timeline(imp.id)]
    log = worker.log_path.read_text(errors="replace")
    assert "give up improvement=" + imp.id in log and log.count("retry improvement=" + imp.id) == 2
