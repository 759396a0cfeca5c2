"""The Redis-list bridge takes each document off youtube:improvements only once it is stored."""

import json

import pytest

from cortex_school.intake.bridge import processing_list, run_bridge
from cortex_school.intake.ingest import ingest_document
from tests.factories import document

SOURCE = "youtube:improvements"


@pytest.fixture
def lists(store):
    store._redis.delete(SOURCE, processing_list(SOURCE))
    yield store._redis
    store._redis.delete(SOURCE, processing_list(SOURCE))


def make_ingest(store, caps, enqueued):
    return lambda raw, source: ingest_document(store, raw, source, caps=caps, enqueue=enqueued.append)


def test_documents_are_ingested_in_push_order_and_removed(store, caps, lists):
    docs = [json.dumps(document(video_id=f"video{i:06d}")) for i in range(3)]
    for d in docs:
        lists.lpush(SOURCE, d)
    lists.lpush(SOURCE, "{not json")
    enqueued = []
    handled = run_bridge(lists, source_list=SOURCE, ingest=make_ingest(store, caps, enqueued),
                         block_seconds=0.1, once=True)
    assert handled == 4
    assert [i.video_id for i in enqueued] == ["video000000", "video000001", "video000002"]
    assert lists.llen(SOURCE) == 0 and lists.llen(processing_list(SOURCE)) == 0
    assert "malformed JSON" in store.rejections()[-1].reason


def test_a_crash_mid_ingest_loses_nothing(store, caps, lists):
    lists.lpush(SOURCE, json.dumps(document(video_id="crashvideo1")))
    enqueued = []
    real = make_ingest(store, caps, enqueued)

    def crashing(raw, source):
        raise ConnectionError("worker died")

    with pytest.raises(ConnectionError):
        run_bridge(lists, source_list=SOURCE, ingest=crashing, block_seconds=0.1, once=True)
    assert lists.llen(SOURCE) == 0
    assert lists.llen(processing_list(SOURCE)) == 1  # parked, not lost

    handled = run_bridge(lists, source_list=SOURCE, ingest=real, block_seconds=0.1, once=True)
    assert handled == 1 and len(enqueued) == 1
    assert lists.llen(processing_list(SOURCE)) == 0
    assert store.ids_for_video("crashvideo1")
