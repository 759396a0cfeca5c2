"""End to end on the real Redis with a real Celery worker subprocess (prefork pool)."""

from __future__ import annotations

import json

import pytest
from celery.result import AsyncResult

from celeryconfig import PIPELINE_QUEUES
from cortex_school.celery import app
from cortex_school.cli.demo import index_platform
from cortex_school.intake.ingest import ingest_document
from cortex_school.models import Status, improvement_id
from cortex_school.pipeline import enqueue
from cortex_school.settings import IngestSettings
from cortex_school.store import RedisStore
from cortex_school.states import RESTING_BEFORE_IMPLEMENTATION as RESTING
from tests.conftest import SAMPLES
from tests.factories import make_improvement
from tests.live import celery_call, wait_until_idle

pytestmark = pytest.mark.live


PLATFORM = SAMPLES.parent / "platform"


@pytest.fixture(scope="module")
def worker(live_worker, tmp_path_factory):
    """A worker on the pipeline queues (``live_worker`` purged first) after indexing, with
    the sample platform's manifests as its GitOps repository (the platform model's source),
    as the demo has."""
    from cortex_school.clients.gitops import ensure_bare_remote

    worker_env = index_platform(PLATFORM)  # the sample platform the RAG checks compare against
    remote = ensure_bare_remote(tmp_path_factory.mktemp("gitops") / "remote.git", "main", PLATFORM / "gitops")
    worker_env.update({"GITOPS_REMOTE": str(remote), "GITOPS_WORKDIR": str(tmp_path_factory.mktemp("clone"))})
    return live_worker(queues=PIPELINE_QUEUES, concurrency=2, env=worker_env).name


def ingest_samples(store, caps):
    ids, reports = set(), []
    for path in sorted(SAMPLES.glob("*.json")):
        report = ingest_document(store, path.read_bytes(), path.name, caps=caps, enqueue=enqueue)
        reports.append(report)
        ids.update(report.created, report.existing)
    return ids, reports


def state_of(store, ids):
    """Every hash and timeline of the given improvements, plus the stage sorted sets."""
    r = store._redis
    snap = {i: (r.hgetall(f"improvement:{i}"), r.lrange(f"improvement:{i}:timeline", 0, -1))
            for i in ids}
    for key in r.scan_iter(match="improvements:*", count=1000):
        if r.type(key) == "zset":
            snap[key] = r.zrange(key, 0, -1, withscores=True)
        elif r.type(key) == "set":
            snap[key] = sorted(r.smembers(key))
    return snap


def by_text(store, video_file: str, description: str):
    video_id = json.loads((SAMPLES / video_file).read_text())["video_id"]
    imp = store.get(improvement_id(video_id, description))
    assert imp is not None, description
    return imp


@pytest.fixture(scope="module")
def processed(worker, settings):
    """The samples, ingested once and run to idle for the tests of this module."""
    store = RedisStore.from_url(settings.redis.url)
    store.purge()
    ids, reports = ingest_samples(store, IngestSettings())
    statuses = wait_until_idle(store, ids, timeout=150, resting=RESTING)
    assert all(s in {r.value for r in RESTING} for s in statuses.values()), statuses
    return store, ids, reports


def test_samples_reach_the_right_stages_with_the_right_reasons(processed):
    store, ids, reports = processed
    assert len(ids) >= 25
    rejected_files = {r.source for r in reports if r.rejections}
    assert {"bad-malformed-json.json", "bad-not-an-object.json", "bad-hostile-ids.json",
            "bad-relevance-out-of-range.json", "bad-unknown-type.json"} <= rejected_files

    def decision(file, text):
        imp = by_text(store, file, text)
        return imp.status, imp.decision.reason if imp.decision else ""

    assert decision("01-docling-rag.json", "Integrate Docling for document processing") == (
        Status.PENDING_REVIEW, "Integrations require manual review")
    status, reason = decision("11-ebpf-observability.json",
                              "Deploy a node-level eBPF exporter for full container visibility")
    assert status is Status.PENDING_REVIEW and "blocked it" in reason and "privileged" in reason
    # Handling credentials makes the experts rate it high: never auto-approved, whatever
    # the relevance (0.96).
    status, reason = decision("05-kubernetes-secrets-zero-trust.json",
                              "Enable encryption at rest for Kubernetes Secrets on the K3s server")
    assert status is Status.PENDING_REVIEW and "rates the risk high" in reason, reason
    status, reason = decision("02-kubernetes-network-policies.json",
                              "Add NetworkPolicies isolating the Qdrant namespace")
    assert status is Status.APPROVED, reason

    # The exact duplicate: the copy ingested first proceeds, the other is held as a conflict.
    first = by_text(store, "03-redis-observability.json", "Add a PrometheusRule alerting on Redis memory usage above 80%")
    second = by_text(store, "04-grafana-slo-dashboards.json", "Add a PrometheusRule alerting on Redis memory usage above 80%")
    # The first is routed to the database expert (Redis): that tier needs 0.95 (it has 0.90).
    assert first.status is Status.PENDING_REVIEW and "duplicate" not in first.decision.reason
    assert "routed to the database expert" in first.decision.reason
    assert second.status is Status.PENDING_REVIEW
    assert f"duplicate: identical to {first.id}" in second.decision.reason

    all_imps = store.many(ids)
    for imp in all_imps:
        if imp.type.value == "concept":
            assert imp.status is Status.PENDING_REVIEW and "knowledge-only" in imp.decision.reason
        assert imp.assessment is not None and imp.assessment.backend.endswith("offline-rules")
        assert f"expert.{imp.expert}" in PIPELINE_QUEUES
        timeline = store.timeline(imp.id)
        steps = [e.to_status for e in timeline if e.from_status != e.to_status]
        assert steps == ["raw", "categorized", "assessed", "validated", imp.status.value], steps
        answers = [e for e in timeline if e.from_status == e.to_status == "categorized"]
        assert len(answers) == len(imp.assessment.consulted or [imp.expert])
        if imp.status is Status.APPROVED:
            assert imp.relevance >= 0.90 and imp.decision.decided_by == "auto-approval-gate"
            assert store._redis.zscore("improvements:implementation", imp.id) == round(imp.relevance * 100, 2)
        else:
            assert store._redis.zscore("improvements:pending_review", imp.id) is not None

    funnel = store.funnel()
    assert sum(funnel.values()) == len(ids)
    assert funnel[Status.APPROVED] == store._redis.zcard("improvements:implementation") >= 3
    # Qdrant already is a StatefulSet in the sample platform: converting it again is held.
    stateful = by_text(store, "17-kubernetes-operators.json", "Run stateful Cortex services as StatefulSets with PodDisruptionBudgets")
    assert stateful.status is Status.PENDING_REVIEW
    assert any(f.check == "already_deployed" and f.conflict and "already runs as StatefulSet" in f.reason
               for f in stateful.validation.findings)
    assert funnel[Status.PENDING_REVIEW] == store._redis.zcard("improvements:pending_review")


def test_reingesting_the_samples_changes_nothing(processed):
    store, ids, _ = processed
    before = state_of(store, ids)
    again, reports = ingest_samples(store, IngestSettings())
    assert again == ids
    assert all(not r.created for r in reports)
    assert state_of(store, ids) == before


@pytest.mark.parametrize("stage", ["route", "evaluate", "aggregate", "validate", "approve"])
def test_rerunning_a_stage_with_celery_call_changes_nothing(processed, stage):
    store, ids, _ = processed
    target = sorted(ids)[0]
    before = state_of(store, ids)
    kwargs = None
    if stage == "evaluate":
        kwargs = f'{{"expert": "{store.get(target).expert}"}}'
    module = "evaluate" if stage == "aggregate" else stage
    task_id = celery_call(f"cortex_school.tasks.{module}.{stage}", f'["{target}"]', kwargs)
    result = AsyncResult(task_id, app=app).get(timeout=30)
    assert result["outcome"] == "skipped" and "nothing to do" in result["detail"]
    assert state_of(store, ids) == before


def test_hostile_task_argument_is_refused_recorded_and_the_worker_survives(processed, worker):
    store, _, _ = processed
    task_id = celery_call("cortex_school.tasks.route.route", '["../../etc/passwd\\r\\nFLUSHALL"]')
    with pytest.raises(Exception, match="not an improvement id"):
        AsyncResult(task_id, app=app).get(timeout=30)
    assert store.rejections()[-1].source == "task:cortex_school.tasks.route.route"
    assert app.control.ping(destination=[worker], timeout=2)


def test_a_stage_that_fails_sends_the_improvement_to_review_with_the_error(processed):
    store, _, _ = processed
    imp = make_improvement("Corrupted state should not strand an improvement", video_id="corrupt0001")
    store.create(imp, actor="test", reason="test")
    store.transition(imp.id, Status.CATEGORIZED, actor="t", reason="t", fields={"expert": "architecture"})
    store.transition(imp.id, Status.ASSESSED, actor="t", reason="t", fields={"assessment": "{broken"})
    result = app.signature("cortex_school.tasks.validate.validate", args=(imp.id,)).apply_async()
    with pytest.raises(Exception):
        result.get(timeout=30)
    fields = store.raw_fields(imp.id)
    assert fields["status"] == "pending_review"
    assert "validate.validate failed" in fields["last_error"]


def test_a_new_proposal_after_all_that_still_flows(processed):
    store, _, _ = processed
    imp = make_improvement("Add liveness probes to the Langflow Deployment", video_id="afterall001",
                           relevance=0.97, category="architecture")
    store.create(imp, actor="test", reason="test")
    enqueue(imp)
    wait_until_idle(store, {imp.id}, timeout=30, resting=RESTING)
    assert store.get(imp.id).status is Status.APPROVED


def test_each_rag_check_stops_a_sample_with_a_reason_a_person_understands(processed):
    store, _, _ = processed

    def conflicts(file, text):
        imp = by_text(store, file, text)
        assert imp.status is Status.PENDING_REVIEW
        return {f.check: f.reason for f in imp.validation.findings if f.conflict}

    found = conflicts("19-redis-alerting-revisited.json", "Alert when Redis memory usage goes above 80 percent")
    first = by_text(store, "03-redis-observability.json", "Add a PrometheusRule alerting on Redis memory usage above 80%")
    # The first one waits for review (the database expert's tier), so it is "in the pipeline".
    assert found["duplicate"].startswith(f"already in the pipeline: similar to {first.id}")
    found = conflicts("10-service-mesh-mtls.json", "Enforce mutual TLS between Cortex services with Linkerd")
    assert "networking.md § Networking > Service mesh" in found["architectural"]
    found = conflicts("14-opentelemetry-tracing.json", "Send OpenTelemetry traces from Langflow to Grafana Tempo")
    assert found["dependency"].startswith("missing dependency: Grafana Tempo is not deployed")
    found = conflicts("20-local-llm-inference.json", "Run a local vLLM inference server for Langflow agents")
    assert "insufficient cluster resources: needs 24.0Gi memory and 8 CPU" in found["capacity"]
    # Checks that looked and found nothing say so, rather than passing silently.
    quiet = by_text(store, "02-kubernetes-network-policies.json", "Add NetworkPolicies isolating the Qdrant namespace")
    assert {f.check for f in quiet.validation.findings} >= {"duplicate", "architectural", "dependency", "capacity"}
    assert quiet.status is Status.APPROVED
