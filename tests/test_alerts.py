"""Alerts and visibility on the real Redis: `cortex-school alerts` (exit 1 when anything
needs attention), the exporter's gauges of waiting work, the one-line `list` and `review
list` at 80 columns, the sectioned `show`, and an infrastructure error that outlives its
retries going to a person (a real GitOps remote path that does not exist)."""

from __future__ import annotations

import json
import re
import time

import pytest
from typer.testing import CliRunner

from celeryconfig import ALL_QUEUES
from cortex_school.alerts import BreakerLimits, collect_alerts, exporter_limits, queue_consumers, registry_for
from cortex_school.cli import app
from cortex_school.models import Finding, Status, ValidationReport
from cortex_school.waiting import Group, StuckLimits
from tests.factories import make_improvement

runner = CliRunner()
LIMITS = StuckLimits(stuck_after=900, health_window=300)
BREAKER = BreakerLimits(rollbacks=3, window_seconds=3600)
TO_COMMITTED = [Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
                Status.IMPLEMENTING, Status.COMMITTED]


@pytest.fixture
def clean(store):
    """The store emptied and no message left in any Celery queue of the test database."""
    store._redis.delete(*ALL_QUEUES)
    yield store
    store._redis.delete(*ALL_QUEUES)


def at(store, title, path, *, age=0.0, actor="t", fields=None):
    imp = make_improvement(title)
    store.create(imp, actor="t", reason="t")
    for n, status in enumerate(path):
        last = n == len(path) - 1
        store.transition(imp.id, status, actor=actor if last else "t", reason=(fields or {}).get(
            "review_reason", "t") if last else "t", fields=(fields or {}) if last else None)
    if age:
        store.set_fields(imp.id, {"status_since": str(time.time() - age)})
    return imp.id


def review_after_gate(store, title, age, reason="relevance 0.80 below the threshold 0.90"):
    return at(store, title, [Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.PENDING_REVIEW],
              age=age, actor="auto-approval-gate", fields={"review_reason": reason})


def everything_wrong(store) -> dict[str, str]:
    """One of each thing that needs attention, plus one review that is young enough."""
    ids = {
        "old_review": review_after_gate(store, "Tune the HPA of the API gateway", 2 * 86400),
        "young_review": review_after_gate(store, "Add a PDB to Qdrant", 600),
        "stuck": at(store, "Route this somewhere", [Status.CATEGORIZED], age=3000),
        "rollback": at(store, "Raise the replica count of the worker", TO_COMMITTED + [Status.FAILED],
                       age=120, fields={"failure_reason": "health check pods failed",
                                        "rollback_status": "revert failed: push refused"}),
        "dead": at(store, "Deploy the nightly backup", [Status.CATEGORIZED], age=60),
    }
    reason = "dead-lettered: cortex_school.tasks.route.route was delivered 3 times and its worker died"
    store.set_fields(ids["dead"], {"dead_lettered": reason})
    store.transition(ids["dead"], Status.PENDING_REVIEW, actor="route@w", reason=reason,
                     fields={"review_reason": reason})
    store.dead_letter(task="cortex_school.tasks.route.route", task_id="x1", args=[ids["dead"]], deliveries=3)
    for n in range(4):  # over the breaker's limit of 3 within the hour
        store.log_rollback(ids["rollback"], f"rollback {n}")
    store._redis.lpush("aggregate", json.dumps({"body": "", "headers": {}, "properties": {}}))
    return ids


def test_nothing_to_attend_to_exits_0(clean):
    """GIVEN an empty pipeline and empty queues WHEN `alerts` THEN it says so and exits 0."""
    out = runner.invoke(app, ["alerts", "--inspect-timeout", "0.3"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    assert "nothing needs attention" in out.output
    listed = runner.invoke(app, ["alerts", "--json", "--inspect-timeout", "0.3"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_alerts_list_everything_that_needs_attention_and_exit_1(clean):
    """GIVEN a review two days old, a young one, stuck work, a failed rollback, a dead letter,
    an open breaker and a queue with a message and no worker WHEN `alerts --json` THEN each
    is there with severity and since, the young review is not, and the exit code is 1."""
    ids = everything_wrong(clean)
    out = runner.invoke(app, ["alerts", "--json", "--inspect-timeout", "0.3"])
    assert out.exit_code == 1, out.output
    found = json.loads(out.stdout)
    by_kind = {}
    for a in found:
        by_kind.setdefault(a["kind"], []).append(a)
    assert [a["improvement_id"] for a in by_kind["waiting_on_person"]] == [ids["old_review"]]
    assert ids["young_review"] not in {a["improvement_id"] for a in found}
    assert [a["improvement_id"] for a in by_kind["stuck"]] == [ids["stuck"]]
    assert [a["improvement_id"] for a in by_kind["rollback_failed"]] == [ids["rollback"]]
    assert "revert failed" in by_kind["rollback_failed"][0]["what"]
    assert [a["improvement_id"] for a in by_kind["dead_letter"]] == [ids["dead"]]
    assert "1 task message(s)" in by_kind["dead_letters"][0]["what"]
    assert "4 rollback(s)" in by_kind["circuit_breaker"][0]["what"]
    (queue,) = by_kind["queue_without_consumer"]
    assert queue["queue"] == "aggregate" and "1 message(s)" in queue["what"]
    severities = [a["severity"] for a in found]
    assert severities == sorted(severities)  # critical before warning
    assert {a["kind"] for a in found if a["severity"] == "critical"} == {
        "rollback_failed", "circuit_breaker", "queue_without_consumer"}
    assert all(a["since"] for a in found if a["kind"] != "queue_without_consumer")
    # The table: one entry per alert, exit 1, the help says what the code means.
    text = runner.invoke(app, ["alerts", "--inspect-timeout", "0.3"], env={"COLUMNS": "80"})
    assert text.exit_code == 1 and ids["rollback"] in text.output and "CRITICAL" in text.output
    assert "ago)" in text.output and not re.search(r"\b1[0-9]{9}\.[0-9]+", text.output)
    helped = runner.invoke(app, ["alerts", "--help"], env={"COLUMNS": "200"}).output
    assert "Exit status 0 when nothing needs attention, 1 when anything does" in " ".join(helped.split())


def test_no_worker_answering_means_no_consumer_and_an_unknown_broker_reports_no_queue(clean):
    """GIVEN no worker on the test database WHEN consumers are asked THEN every queue has 0;
    GIVEN consumers unknown (None) THEN no queue is reported as unconsumed."""
    counts = queue_consumers(ALL_QUEUES, timeout=0.3)
    assert counts == dict.fromkeys(ALL_QUEUES, 0)
    clean._redis.lpush("route", "{}")
    kinds = [a.kind for a in collect_alerts(clean, limits=LIMITS, breaker=BREAKER, queues=ALL_QUEUES,
                                             consumers=None)]
    assert "queue_without_consumer" not in kinds
    found = collect_alerts(clean, limits=LIMITS, breaker=BREAKER, queues=ALL_QUEUES,
                           consumers={**counts, "route": 1})
    assert [a.kind for a in found] == []


def test_the_exporter_gauges_what_waits(clean):
    """GIVEN everything wrong at once WHEN the exporter is read THEN waiting_on_person by
    reason, the oldest review's age, stuck work, dead letters, the breaker, consumers and
    depth are what the store holds."""
    ids = everything_wrong(clean)
    registry = registry_for(clean, ALL_QUEUES, limits=LIMITS, breaker=BREAKER, consumers=lambda: {"route": 2})
    value = registry.get_sample_value
    assert value("cortex_school_waiting_on_person", {"reason": "review"}) == 2
    assert value("cortex_school_waiting_on_person", {"reason": "rollback_failed"}) == 1
    assert value("cortex_school_waiting_on_person", {"reason": "dead_letter"}) == 1
    assert value("cortex_school_waiting_on_person", {"reason": "stuck"}) == 1
    assert value("cortex_school_waiting_on_person", {"reason": "policy"}) == 0
    assert 2 * 86400 - 60 < value("cortex_school_oldest_review_age_seconds") < 2 * 86400 + 60
    assert value("cortex_school_stuck_improvements") == 1
    assert value("cortex_school_dead_letters_total") == 1
    assert value("cortex_school_circuit_breaker_open") == 1
    assert value("cortex_queue_consumers", {"queue": "route"}) == 2
    assert value("cortex_queue_consumers", {"queue": "aggregate"}) == 0
    assert value("cortex_queue_depth", {"queue": "aggregate"}) == 1
    assert ids  # every id was created
    # Consumers unknown: the series is left out, never reported as 0.
    unknown = registry_for(clean, ALL_QUEUES, limits=LIMITS, breaker=BREAKER, consumers=lambda: None)
    assert unknown.get_sample_value("cortex_queue_consumers", {"queue": "route"}) is None


def long_reason(n: int) -> str:
    return f"{n} policy/schema violation(s), nothing committed: " + "; ".join(
        f"Deployment cortex-system/app-{k} spec.template.spec.containers[0].image not pinned"
        for k in range(6))


def test_list_and_review_list_are_one_line_per_improvement_at_80_columns(clean):
    """GIVEN three improvements in pending_review with long reasons WHEN `list --stage
    pending_review` and `review list` at COLUMNS=80 THEN each improvement is one line of at
    most 80 characters with its whole id, its age (2d, 3h, 5m) and the reason's start."""
    ages = {review_after_gate(clean, f"Proposal number {n}", age, long_reason(n)): label
            for n, (age, label) in enumerate([(2 * 86400 + 50, "2d"), (3 * 3600 + 20, "3h"), (300, "5m")])}
    for args in (["list", "--stage", "pending_review"], ["review", "list"]):
        out = runner.invoke(app, args, env={"COLUMNS": "80"})
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
        for iid, age in ages.items():
            (row,) = [line for line in lines if iid in line]
            assert re.search(rf"\b{age}\b", row) and "policy/schema" in row and "…" in row
        assert not [line for line in lines if re.search(r"\b[0-9a-f]{6,15}$", line)]  # no split id
    assert "pending_review: 3" in runner.invoke(app, ["review", "list"], env={"COLUMNS": "80"}).output
    rows = json.loads(runner.invoke(app, ["review", "list", "--json"]).stdout)
    assert {r["id"] for r in rows} == set(ages) and {r["group"] for r in rows} == {"review"}
    assert all(r["since"] and r["waiting_seconds"] > 0 for r in rows)


def test_show_is_sectioned_with_times_for_people(clean):
    """GIVEN an improvement with a finding, a plan and a timeline WHEN `show` THEN summary,
    findings, plan and timeline come in that order, times are dates and ages (never epoch
    floats), and the rest of the fields are named, not dumped."""
    iid = at(clean, "Deploy Qdrant for semantic search", [Status.CATEGORIZED, Status.ASSESSED])
    report = ValidationReport(passed=False, findings=[Finding(
        check="already_deployed", conflict=True, reason="already deployed: Qdrant runs in knowledge",
        evidence=["StatefulSet knowledge/qdrant (apps/knowledge/qdrant.yaml)"])])
    clean.transition(iid, Status.VALIDATED, actor="t", reason="t", fields={"validation": report.model_dump_json()})
    clean.transition(iid, Status.PENDING_REVIEW, actor="auto-approval-gate", reason="conflict",
                     fields={"review_reason": "already deployed: Qdrant runs in knowledge",
                             "plan": json.dumps({"planner": "offline-planner", "manual_steps": ["restart k3s"],
                                                 "resources": [{"kind": "StatefulSet", "namespace": "knowledge",
                                                                "name": "qdrant"}]})})
    out = runner.invoke(app, ["show", iid], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    text = out.output
    positions = [text.index(word) for word in ("status", "findings (1 validation", "plan", "timeline (")]
    assert positions == sorted(positions)
    assert "already_deployed" in text and "apps/knowledge/qdrant.yaml" in text
    assert "StatefulSet knowledge/qdrant" in text and "manual: restart k3s" in text
    assert "UTC (" in text and not re.search(r"\b1[0-9]{9}\.[0-9]+", text)
    assert "more field(s)" in text and "status_since" in text
    assert len(text.splitlines()) < 60
    full = runner.invoke(app, ["show", iid, "--all"], env={"COLUMNS": "80"}).output
    assert not re.search(r"status_since: 1[0-9]{9}", full)
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["funnel"]["pending_review"] == 1 and status["dead_letters"] == 0


def test_policy_check_speaks_json(tmp_path):
    """GIVEN a manifest WHEN `policy check --json` THEN the report is JSON (as --format json)."""
    path = tmp_path / "cm.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: cortex-system}\n"
                    "data: {a: b}\n")
    out = runner.invoke(app, ["policy", "check", "--json", str(path)])
    assert json.loads(out.stdout)["objects"] == 1


def test_an_infrastructure_error_after_its_retries_goes_to_a_person(clean, settings, monkeypatch, tmp_path):
    """GIVEN an approved improvement and a GitOps remote that does not exist WHEN the
    implement task runs and every retry fails THEN the improvement is in pending_review (not
    implementing) with the git error, the attempts and what to do; `alerts` lists it."""
    from cortex_school import runtime
    from cortex_school.tasks.implement import implement

    missing = tmp_path / "no-such-remote.git"
    monkeypatch.setattr(settings.gitops, "remote_url", str(missing))
    monkeypatch.setattr(settings.gitops, "workdir", tmp_path / "clones")
    monkeypatch.setattr(settings.tasks, "max_retries", 2)
    monkeypatch.setattr(settings.tasks, "retry_backoff_seconds", 0.01)
    runtime.get_gitops_repo.cache_clear()
    assert runtime.get_gitops_repo().remote == str(missing)
    try:
        iid = at(clean, "Alert when Qdrant is down", TO_COMMITTED[:4])
        implement.apply(args=(iid,))
    finally:
        runtime.get_gitops_repo.cache_clear()
    fields = clean.raw_fields(iid)
    assert fields["status"] == Status.PENDING_REVIEW.value
    reason = fields["review_reason"]
    assert reason.startswith("infrastructure error in implement, gave up after 3 attempts: GitOpsError")
    assert "does not exist" in reason and f"review approve {iid}" in reason
    assert fields["infrastructure_error"] == reason
    assert [e.to_status for e in clean.timeline(iid)][-2:] == ["implementing", "pending_review"]
    assert any(a["improvement_id"] == iid for a in clean.alerts())
    found = collect_alerts(clean, limits=LIMITS, breaker=BREAKER, queues=(), consumers={})
    assert [(a.kind, a.improvement_id) for a in found] == [("infrastructure", iid)]
    limits, _ = exporter_limits(settings)
    from cortex_school.waiting import current_reason

    assert current_reason(clean, iid, limits=limits).group is Group.IMPLEMENTATION
