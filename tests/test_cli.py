"""The CLI on the real Redis (ingest without enqueueing; no worker needed)."""

import json

from typer.testing import CliRunner

from cortex_school.cli import app
from cortex_school.models import Status
from tests.conftest import SAMPLES

runner = CliRunner()


def invoke(*args, input=None):
    result = runner.invoke(app, list(args), input=input, env={"COLUMNS": "200"})
    return result


def test_ingest_reports_accepted_and_rejected_per_file(store):
    result = invoke("ingest", "--no-enqueue", str(SAMPLES / "bad-unknown-type.json"),
                    str(SAMPLES / "bad-not-an-object.json"), "/nonexistent/file.json")
    assert result.exit_code == 0, result.output
    assert "bad-unknown-type.json: accepted 1 (1 new), rejected 1 part(s)" in result.output
    assert "improvements.passive[1].type" in result.output
    assert "expected a JSON object" in result.output
    assert "no such file or directory" in result.output
    assert store._redis.llen("improvements:rejected") == 3


def test_ingest_from_stdin_status_list_and_show(store):
    doc = (SAMPLES / "02-kubernetes-network-policies.json").read_text()
    assert invoke("ingest", "--no-enqueue", "-", input=doc).exit_code == 0
    status = invoke("status")
    assert "raw" in status.output and status.exit_code == 0
    listed = invoke("list", "--stage", "raw")
    ids = sorted(store.ids_with_status(Status.RAW))
    assert ids and all(i in listed.output for i in ids)
    shown = invoke("show", ids[0])
    assert "timeline" in shown.output and "ingested from <stdin>" in shown.output
    assert invoke("show", "nope").exit_code == 1
    assert invoke("list", "--stage", "bogus").exit_code == 2


def test_flags_and_review_commands(store):
    assert invoke("flags", "set", "auto_approve_none", "true").exit_code == 0
    assert store.flags()["auto_approve_none"]
    assert "auto_approve_none" in invoke("flags", "show").output
    assert invoke("flags", "set", "make_it_so", "true").exit_code == 2
    assert invoke("flags", "set", "auto_approve_all", "maybe").exit_code == 2
    doc = json.loads((SAMPLES / "02-kubernetes-network-policies.json").read_text())
    invoke("ingest", "--no-enqueue", "-", input=json.dumps(doc))
    some_id = sorted(store.ids_with_status(Status.RAW))[0]
    refused = invoke("review", "approve", some_id)
    assert refused.exit_code == 1 and "not pending_review" in refused.output
    store.transition(some_id, Status.PENDING_REVIEW, actor="t", reason="t")
    assert "pending_review: 1" in invoke("review", "list").output
    done = invoke("review", "reject", some_id, "--reason", "not now", "--by", "ana")
    assert done.exit_code == 0 and store.get(some_id).status is Status.REJECTED


def test_hostile_input_is_printed_literally_not_as_markup(store):
    doc = json.dumps({"video_id": "abc", "title": "t", "relevance": 0.5, "improvements": {"passive": [
        {"category": "[red]x[/red]", "type": "tool", "description": "[bold]boom[/bold]"}]}})
    result = invoke("ingest", "--no-enqueue", "-", input=doc)
    assert "[red]x[/red]" in result.output
    pattern = invoke("ingest", "--no-enqueue", str(SAMPLES / "bad-hostile-ids.json")).output
    assert "^[a-z][a-z0-9_-]{0,31}$" in pattern


def test_show_and_list_speak_json_for_scripts(store):
    """GIVEN an improvement validated with an already_deployed finding WHEN `show --json ID`
    and `list --json` THEN the findings come as objects with check, conflict, reason and
    evidence, and the list has one row per improvement with its current reason."""
    from cortex_school.models import Finding, ValidationReport
    from tests.factories import make_improvement

    imp = make_improvement("Deploy Qdrant for semantic search")
    store.create(imp, actor="t", reason="t")
    for target in (Status.CATEGORIZED, Status.ASSESSED):
        store.transition(imp.id, target, actor="t", reason="t")
    report = ValidationReport(passed=False, findings=[Finding(
        check="already_deployed", conflict=True, reason="already deployed: Qdrant runs in knowledge",
        related_id="qdrant", evidence=["StatefulSet knowledge/qdrant (apps/knowledge/qdrant.yaml)"])])
    store.transition(imp.id, Status.VALIDATED, actor="t", reason="t",
                     fields={"validation": report.model_dump_json()})
    store.transition(imp.id, Status.PENDING_REVIEW, actor="t", reason="t",
                     fields={"review_reason": "already deployed: Qdrant runs in knowledge"})
    shown = runner.invoke(app, ["show", imp.id, "--json"])
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert record["status"] == "pending_review" and record["fields"]["title"] == imp.title
    (finding,) = record["findings"]
    assert finding == {"check": "already_deployed", "conflict": True,
                       "reason": "already deployed: Qdrant runs in knowledge", "related_id": "qdrant",
                       "evidence": ["StatefulSet knowledge/qdrant (apps/knowledge/qdrant.yaml)"]}
    assert [e["to_status"] for e in record["timeline"]][-1] == "pending_review"
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["id"] == imp.id and row["conflicts"] == ["already_deployed"]
    assert row["reason"].startswith("already deployed")
    assert runner.invoke(app, ["list"]).exit_code == 2  # the table needs a stage
    assert runner.invoke(app, ["show", "0" * 16, "--json"]).exit_code == 1
