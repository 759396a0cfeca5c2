"""Ingestion: the service's real format is accepted; every kind of bad input is refused
with the file and field named, recorded in Redis, and never stops the rest."""

import json

import pytest

from cortex_school.intake.ingest import ingest_document, parse_document
from cortex_school.models import Status, improvement_id
from tests.conftest import SAMPLES
from tests.factories import document

ITEM = {"category": "monitoring", "type": "enhancement", "status": "pending",
        "description": "Add a Grafana dashboard for Qdrant latency",
        "implementation_notes": "ConfigMap with dashboard JSON in monitoring namespace."}


def parse(doc, caps, source="test.json"):
    raw = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
    return parse_document(raw, source, caps)


def only_rejection(result):
    assert len(result.rejections) >= 1
    return result.rejections[0]


def test_service_format_with_passive_and_active_lists(caps):
    doc = document(
        [ITEM],
        description="A talk about RAG", analyzed_at="2026-11-20T10:00:00Z",
    )
    doc["improvements"]["active"] = [
        {**ITEM, "description": "Alert on Qdrant p95 latency", "relevance": 0.5,
         "auto_approve": True, "proposed_at": "2026-11-20T10:01:00Z"},
    ]
    result = parse(doc, caps)
    assert not result.rejections
    passive, active = result.improvements
    assert (passive.list_kind, passive.relevance, passive.relevance_source) == ("passive", 0.95, "video")
    assert (active.list_kind, active.relevance, active.relevance_source) == ("active", 0.5, "item")
    assert active.auto_approve_hint is True and active.proposed_at is not None
    assert passive.video_description == "A talk about RAG"


def test_unknown_category_is_kept(caps):
    result = parse(document([{**ITEM, "category": "Knowledge"}]), caps)
    assert result.improvements[0].category == "knowledge"


def test_ids_are_deterministic_and_ignore_case_and_spacing(caps):
    a = parse(document([ITEM]), caps).improvements[0]
    b = parse(document([{**ITEM, "description": "  add a GRAFANA dashboard for qdrant latency "}]), caps).improvements[0]
    assert a.id == b.id == improvement_id("rrQHnibpXX8", ITEM["description"])


@pytest.mark.parametrize(
    "doc,location,words",
    [
        ('{"video_id": "x", "title": ', "document", "malformed JSON"),
        ("[1, 2]", "document", "expected a JSON object"),
        (b"\xff\xfe{}", "document", "not UTF-8"),
        ('{"video_id": "abc", "title": "t", "relevance": NaN, "improvements": {"passive": []}}',
         "document", "NaN is not a valid JSON number"),
        (document(relevance=1.7), "relevance", "less than or equal to 1"),
        (document(relevance=-0.1), "relevance", "greater than or equal to 0"),
        (document(relevance="0.9"), "relevance", "valid number"),
        (document(relevance=True), "relevance", "valid number"),
        (document(video_id="../../etc/passwd"), "video_id", "should match pattern"),
        (document(video_id="abc def"), "video_id", "should match pattern"),
        (document(video_id="a" * 65), "video_id", "should match pattern"),
        (document(title=""), "title", "at least 1 character"),
        (document(title="x" * 501), "title", "the cap is 500"),
        (document(title="evil\x1b[2Jtitle"), "title", "control or bidi-override"),
        ({"video_id": "abc", "title": "t", "relevance": 0.5}, "improvements", "missing"),
        (document([]), "improvements", "no proposals"),
        ({"video_id": "abc", "title": "t", "relevance": 0.5, "improvements": {"passive": "x"}},
         "improvements.passive", "must be a list"),
    ],
)
def test_bad_documents_are_rejected_with_the_field_named(caps, doc, location, words):
    result = parse(doc, caps)
    assert not result.improvements
    first = only_rejection(result)
    assert first.location == location
    assert words in first.reason
    assert first.source == "test.json"


@pytest.mark.parametrize(
    "item,field,words",
    [
        ({**ITEM, "type": "blockchain-magic"}, "type", "Input should be"),
        ({**ITEM, "description": ""}, "description", "at least 1 character"),
        ({**ITEM, "description": "   "}, "description", "at least 1 character"),
        ({**ITEM, "description": "x" * 4001}, "description", "4001 characters; the cap is 4000"),
        ({**ITEM, "implementation_notes": "y" * 10001}, "implementation_notes", "the cap is 10000"),
        ({**ITEM, "description": "nul\x00byte"}, "description", "control or bidi-override"),
        ({**ITEM, "description": "flip \u202etxt.exe"}, "description", "control or bidi-override"),
        ({**ITEM, "category": "security:*\r\nFLUSHALL"}, "category", "should match pattern"),
        ({**ITEM, "category": "../etc"}, "category", "should match pattern"),
        ({**ITEM, "category": 7}, "category", "valid string"),
        ({**ITEM, "relevance": 3}, "relevance", "less than or equal to 1"),
        ({**ITEM, "relevance": "high"}, "relevance", "valid number"),
        ({k: v for k, v in ITEM.items() if k != "description"}, "description", "Field required"),
        ({k: v for k, v in ITEM.items() if k != "type"}, "type", "Field required"),
    ],
)
def test_bad_items_are_rejected_and_their_siblings_still_go_through(caps, item, field, words):
    good = {**ITEM, "description": "Add a PodDisruptionBudget for Qdrant"}
    result = parse(document([good, item]), caps)
    assert [i.description for i in result.improvements] == [good["description"]]
    rejection = only_rejection(result)
    assert rejection.location == f"improvements.passive[1].{field}"
    assert words in rejection.reason


def test_non_object_item_and_repeated_item(caps):
    result = parse(document([ITEM, "just a string", ITEM]), caps)
    assert len(result.improvements) == 1
    reasons = {r.location: r.reason for r in result.rejections}
    assert "expected an object" in reasons["improvements.passive[1]"]
    assert "same proposal as an earlier entry" in reasons["improvements.passive[2]"]


def test_oversized_document_is_refused_unparsed(caps):
    caps.max_file_bytes = 100
    result = parse(document([ITEM] * 5), caps)
    assert "the cap is 100" in only_rejection(result).reason


def test_bad_header_still_reports_item_problems(caps):
    result = parse(document([{**ITEM, "type": "nope"}, ITEM], video_id="a/b"), caps)
    locations = [r.location for r in result.rejections]
    assert locations == ["video_id", "improvements.passive[0].type", "improvements.passive[1]"]
    assert not result.improvements


def test_ingest_stores_once_records_rejections_and_enqueues_new_only(store, caps):
    doc = json.dumps(document([ITEM, {**ITEM, "description": "", "type": "x"}]))
    enqueued = []
    first = ingest_document(store, doc, "f.json", caps=caps, enqueue=enqueued.append)
    assert len(first.created) == 1 and len(first.rejections) == 2
    assert store._redis.llen("improvements:rejected") == 2
    stored = json.loads(store._redis.lindex("improvements:rejected", 0))
    assert stored["source"] == "f.json" and stored["location"].startswith("improvements.passive[1]")
    store.transition(first.created[0], Status.PENDING_REVIEW, actor="t", reason="t")
    again = ingest_document(store, doc, "f.json", caps=caps, enqueue=enqueued.append)
    assert again.created == [] and again.existing == first.created and again.resumed == []
    assert len(enqueued) == 1


def test_ingest_resumes_an_existing_improvement_still_in_flight(store, caps):
    doc = json.dumps(document([ITEM]))
    enqueued = []
    ingest_document(store, doc, "f.json", caps=caps, enqueue=enqueued.append)
    again = ingest_document(store, doc, "f.json", caps=caps, enqueue=enqueued.append)
    assert again.resumed == again.existing and len(enqueued) == 2
    assert len(store.timeline(again.existing[0])) == 1  # resuming writes no state


def test_shipped_samples_parse_and_bad_ones_are_rejected(caps):
    good = bad = proposals = 0
    for path in sorted(SAMPLES.glob("*.json")):
        result = parse_document(path.read_bytes(), path.name, caps)
        if path.name.startswith("bad-"):
            bad += 1
            assert result.rejections, path.name
        else:
            good += 1
            proposals += len(result.improvements)
            assert not result.rejections, (path.name, result.rejections)
    assert good >= 16 and proposals >= 25 and bad >= 5
