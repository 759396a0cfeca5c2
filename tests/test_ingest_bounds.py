"""No document crashes ingestion: depth and size are bounded before parsing, parser errors
are rejections, the bridge dead-letters what it cannot store and goes on; settings read
only their design names from the environment."""

import json

import pytest
from typer.testing import CliRunner

from cortex_school.intake import bridge as bridge_module
from cortex_school.intake.bridge import (
    EXCERPT_CHARS,
    dead_letter_list,
    processing_list,
    run_bridge,
    starts_hash,
)
from cortex_school.cli import app
from cortex_school.intake.ingest import ingest_document, iter_sources, max_json_depth, parse_document
from cortex_school.settings import Settings, _Settings
from tests.conftest import SAMPLES
from tests.factories import document

SOURCE = "youtube:improvements"
DEEP = "[" * 120_000
MARKER = "explode-on-ingest"


def good(i: int) -> str:
    return json.dumps(document(video_id=f"boundvid{i:03d}"))


# -- parse_document ------------------------------------------------------------------


def test_deeply_nested_document_is_a_rejection_not_an_exception(caps):
    """GIVEN 120 KB of '[' WHEN parsed THEN one document rejection naming the depth cap, no exception."""
    result = parse_document(DEEP, "deep.json", caps)
    assert result.improvements == []
    (rejection,) = result.rejections
    assert (rejection.source, rejection.location) == ("deep.json", "document")
    assert "the cap is 32" in rejection.reason
    assert result.unreadable is not None and result.unreadable.kind == "too_deep"


def test_deep_bytes_and_deep_objects_are_refused_too(caps):
    """GIVEN deep objects as bytes WHEN parsed THEN refused before the parser sees them."""
    deep_objects = ('{"a":' * 5000 + "1" + "}" * 5000).encode()
    assert parse_document(deep_objects, "x", caps).unreadable.kind == "too_deep"


def test_brackets_inside_strings_do_not_count(caps):
    """GIVEN a valid document whose text holds many brackets WHEN parsed THEN it is accepted."""
    doc = document([{"category": "monitoring", "type": "enhancement",
                     "description": "Alert on [[[[ {{{{ \\\" [[[[ latency",
                     "implementation_notes": "[" * 100}])
    result = parse_document(json.dumps(doc), "x", caps)
    assert not result.rejections and len(result.improvements) == 1
    assert max_json_depth(json.dumps(doc)) == 4


def test_a_configured_depth_above_the_parsers_limit_still_never_raises(caps):
    """GIVEN MAX_JSON_DEPTH above Python's recursion limit WHEN a deeper document is parsed
    THEN the RecursionError is a rejection."""
    caps.max_json_depth = 1_000_000
    result = parse_document("[" * 100_000 + "]" * 100_000, "x", caps)
    assert result.unreadable.kind == "RecursionError"
    assert len(result.rejections) == 1


@pytest.mark.parametrize(
    "raw, kind",
    [(b"\xff\xfe{}", "not_utf8"), ('{"a": NaN}', "malformed_json"), ("{nope", "malformed_json")],
)
def test_every_parser_error_is_a_rejection(caps, raw, kind):
    """GIVEN undecodable or malformed input WHEN parsed THEN a rejection of that kind."""
    result = parse_document(raw, "x", caps)
    assert result.unreadable.kind == kind and len(result.rejections) == 1


def test_size_cap_counts_bytes_of_text_input(caps):
    """GIVEN a str under the cap in characters but over it in UTF-8 bytes WHEN parsed THEN refused."""
    caps.max_file_bytes = 100
    result = parse_document('"' + "é" * 60 + '"', "x", caps)
    assert result.unreadable.kind == "too_large" and "the cap is 100" in result.rejections[0].reason


def test_sources_are_read_only_up_to_the_cap(tmp_path, caps):
    """GIVEN a file far over the cap WHEN read with max_bytes THEN only cap+1 bytes are read, then refused."""
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 10_000)
    ((source, raw, problem),) = list(iter_sources([str(big)], max_bytes=100))
    assert problem is None and len(raw) == 101
    caps.max_file_bytes = 100
    assert parse_document(raw, source, caps).unreadable.kind == "too_large"


def test_ingest_document_records_the_rejection(store, caps):
    """GIVEN a deep document WHEN ingested THEN it is recorded in improvements:rejected and nothing stored."""
    report = ingest_document(store, DEEP, "deep.json", caps=caps, enqueue=lambda i: None)
    assert report.unreadable is not None and report.accepted == 0
    (recorded,) = store.rejections()
    assert recorded.source == "deep.json" and "nest" in recorded.reason


# -- cortex-school ingest DIR --------------------------------------------------------


def test_cli_ingest_dir_goes_past_a_deep_file_and_exits_1(store, tmp_path):
    """GIVEN a directory with a deep file among good ones WHEN `ingest DIR` THEN the good ones
    are stored, the deep one recorded and reported, exit 1."""
    (tmp_path / "a-good.json").write_text(good(1))
    (tmp_path / "b-deep.json").write_text(DEEP)
    (tmp_path / "c-good.json").write_text(good(2))
    result = CliRunner().invoke(app, ["ingest", "--no-enqueue", str(tmp_path)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert store.ids_for_video("boundvid001") and store.ids_for_video("boundvid002")
    (rejection,) = store.rejections()
    assert rejection.source.endswith("b-deep.json") and "the cap is 32" in rejection.reason
    assert "b-deep.json" in result.output and "c-good.json: accepted 1" in result.output


def test_cli_ingest_goes_past_a_file_whose_ingestion_raises(store, tmp_path, monkeypatch):
    """GIVEN ingestion raising for one file WHEN `ingest DIR` THEN the others are stored,
    the failure recorded, exit 1."""
    import cortex_school.cli as cli

    real = cli.ingest_document

    def flaky(store_, raw, source, **kwargs):
        if MARKER.encode() in raw:
            raise TypeError("a bug")
        return real(store_, raw, source, **kwargs)

    monkeypatch.setattr(cli, "ingest_document", flaky)
    (tmp_path / "a.json").write_text(json.dumps(document(video_id="boundvid003", note=MARKER)))
    (tmp_path / "b.json").write_text(good(4))
    result = CliRunner().invoke(app, ["ingest", "--no-enqueue", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert store.ids_for_video("boundvid004")
    assert "ingestion failed: TypeError: a bug" in store.rejections()[-1].reason


def test_cli_ingest_of_good_files_still_exits_0(store):
    """GIVEN only good sample files WHEN ingested THEN exit 0."""
    result = CliRunner().invoke(app, ["ingest", "--no-enqueue", str(SAMPLES / "01-docling-rag.json")])
    assert result.exit_code == 0, result.output


# -- the bridge ----------------------------------------------------------------------


@pytest.fixture
def lists(store):
    keys = (SOURCE, processing_list(SOURCE), dead_letter_list(SOURCE), starts_hash(SOURCE))
    store._redis.delete(*keys)
    yield store._redis
    store._redis.delete(*keys)


def flaky_ingest(store, caps, enqueued):
    def ingest(raw, source):
        if MARKER in raw:
            raise KeyError(MARKER)
        return ingest_document(store, raw, source, caps=caps, enqueue=enqueued.append)

    return ingest


def dead_letters(client):
    return [json.loads(r) for r in reversed(client.lrange(dead_letter_list(SOURCE), 0, -1))]


def test_bridge_dead_letters_bad_documents_and_goes_on(store, caps, lists):
    """GIVEN a deep document and one that makes ingest raise among good ones WHEN the bridge
    runs THEN the good ones are stored, the bad ones dead-lettered with the reason, nothing left in flight."""
    raising = json.dumps(document(video_id="boundvid099", note=MARKER))
    for raw in (good(1), DEEP, good(2), raising, good(3)):
        lists.lpush(SOURCE, raw)
    enqueued, dead = [], []
    handled = run_bridge(lists, source_list=SOURCE, ingest=flaky_ingest(store, caps, enqueued),
                         block_seconds=0.1, once=True, on_dead_letter=dead.append)
    assert handled == 5
    assert [i.video_id for i in enqueued] == ["boundvid001", "boundvid002", "boundvid003"]
    deep, raised = dead_letters(lists)
    assert deep["error"] == "too_deep" and "the cap is 32" in deep["reason"]
    assert deep["length"] == len(DEEP) and deep["document"] == DEEP[:EXCERPT_CHARS]
    assert raised["error"] == "KeyError" and MARKER in raised["reason"]
    assert raised["document"] == raising and raised["at"]
    assert dead == [deep, raised]
    assert lists.llen(SOURCE) == 0 and lists.llen(processing_list(SOURCE)) == 0
    assert lists.hlen(starts_hash(SOURCE)) == 0
    assert store.stats()["bridge_dead_lettered"] == 2


def test_restart_with_a_poisoned_processing_list_does_not_crash(store, caps, lists):
    """GIVEN a processing list left holding a deep and a raising document WHEN the bridge
    starts THEN both are dead-lettered and the good one behind them is stored."""
    raising = json.dumps(document(video_id="boundvid098", note=MARKER))
    lists.lpush(processing_list(SOURCE), DEEP, raising)
    lists.lpush(SOURCE, good(5))
    enqueued = []
    handled = run_bridge(lists, source_list=SOURCE, ingest=flaky_ingest(store, caps, enqueued),
                         block_seconds=0.1, once=True)
    assert handled == 3 and [i.video_id for i in enqueued] == ["boundvid005"]
    assert [d["error"] for d in dead_letters(lists)] == ["too_deep", "KeyError"]
    assert lists.llen(processing_list(SOURCE)) == 0


def test_a_document_that_kills_the_bridge_is_not_taken_forever(store, caps, lists):
    """GIVEN a document whose ingestion kills the bridge every time WHEN it restarts
    THEN after MAX_STARTS tries it is dead-lettered and the rest flows."""
    lists.lpush(SOURCE, json.dumps(document(video_id="boundvid097", note=MARKER)))

    def dying(raw, source):
        raise SystemExit("killed")  # like an OOM kill: nothing the bridge can catch

    for _ in range(bridge_module.MAX_STARTS):
        with pytest.raises(SystemExit):
            run_bridge(lists, source_list=SOURCE, ingest=dying, block_seconds=0.1, once=True)
        assert lists.llen(processing_list(SOURCE)) == 1
    lists.lpush(SOURCE, good(6))
    enqueued = []
    run_bridge(lists, source_list=SOURCE, ingest=flaky_ingest(store, caps, enqueued),
               block_seconds=0.1, once=True)
    (record,) = dead_letters(lists)
    assert record["error"] == "Unfinished" and record["starts"] == bridge_module.MAX_STARTS + 1
    assert [i.video_id for i in enqueued] == ["boundvid006"]
    assert lists.llen(processing_list(SOURCE)) == 0 and lists.hlen(starts_hash(SOURCE)) == 0


def test_redis_errors_still_park_the_document(store, caps, lists):
    """GIVEN ingestion failing on Redis itself WHEN the bridge runs THEN it stops and the
    document waits in the processing list, not in the dead letters."""
    lists.lpush(SOURCE, good(7))

    def down(raw, source):
        raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError):
        run_bridge(lists, source_list=SOURCE, ingest=down, block_seconds=0.1, once=True)
    assert lists.llen(processing_list(SOURCE)) == 1 and lists.llen(dead_letter_list(SOURCE)) == 0


def test_cli_bridge_exits_1_when_it_dead_lettered(store, lists, monkeypatch):
    """GIVEN a deep document on the list WHEN `bridge --once` THEN it is dead-lettered, the
    good one stored, exit 1; status shows the count."""
    import cortex_school.cli as cli

    monkeypatch.setattr(cli, "_enqueue", lambda imp: None)
    lists.lpush(SOURCE, good(8), DEEP)
    result = CliRunner().invoke(app, ["bridge", "--once", "--block-seconds", "0.1"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert store.ids_for_video("boundvid008") and lists.llen(dead_letter_list(SOURCE)) == 1
    status = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert f"1 dead-lettered document(s) in {dead_letter_list(SOURCE)}" in status.output


# -- settings read only design names from the environment ----------------------------

GENERIC = ("HOST", "PORT", "DB", "MODE", "NAMESPACE", "TOKEN", "URL", "PASSWORD", "USERNAME")


GROUPS = {name: field.annotation for name, field in Settings.model_fields.items()
          if isinstance(field.annotation, type) and issubclass(field.annotation, _Settings)}


def _aliases():
    return {f.validation_alias for cls in (Settings, *GROUPS.values()) for f in cls.model_fields.values()
            if isinstance(f.validation_alias, str)}


def test_generic_and_bare_field_names_in_the_environment_change_nothing(monkeypatch):
    """GIVEN HOST, PORT, DB, MODE, ... and every bare field name set to junk WHEN settings are
    built THEN they are the defaults."""
    aliases = _aliases()
    for alias in aliases:  # conftest sets REDIS_DB; the shell may set others
        monkeypatch.delenv(alias, raising=False)
    bare = {name for cls in (Settings, *GROUPS.values()) for name in cls.model_fields}
    for name in {*GENERIC, *bare}:
        if name.upper() not in aliases:  # kubeconfig is also KUBECONFIG, its design name
            monkeypatch.setenv(name.upper(), "junk")
            monkeypatch.setenv(name, "junk")
    settings = Settings()
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.gitops.mode == "merge" and settings.gitops.secret is None
    assert settings.policy.allowed_namespaces == ["cortex-system"]
    for owner in (settings, *(getattr(settings, group) for group in GROUPS)):
        for name, field in type(owner).model_fields.items():
            if name not in GROUPS:
                assert getattr(owner, name) == field.get_default(call_default_factory=True), name


def test_design_names_still_configure(monkeypatch):
    """GIVEN REDIS_HOST, REDIS_PORT, REDIS_DB, GITOPS_MODE, MAX_JSON_DEPTH set WHEN settings are built THEN they apply."""
    monkeypatch.setenv("REDIS_HOST", "redis.example")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_DB", "7")
    monkeypatch.setenv("GITOPS_MODE", "branch")
    monkeypatch.setenv("ALLOWED_NAMESPACES", "a, b")
    monkeypatch.setenv("MAX_JSON_DEPTH", "8")
    monkeypatch.setenv("HOST", "junk")
    settings = Settings()
    assert settings.redis.url == "redis://redis.example:6380/7"
    assert settings.gitops.mode == "branch" and settings.policy.allowed_namespaces == ["a", "b"]
    assert settings.ingest.max_json_depth == 8


def test_python_code_still_builds_settings_by_field_name(monkeypatch):
    """GIVEN settings built in Python by field name WHEN read THEN the values are used."""
    from cortex_school.settings import PolicySettings, RedisSettings

    monkeypatch.delenv("REDIS_DB", raising=False)
    assert RedisSettings(host="h", port=1, db=2).url == "redis://h:1/2"
    assert PolicySettings(allowed_namespaces=["x"]).allowed_namespaces == ["x"]
    assert Settings(redis=RedisSettings(host="q")).redis.host == "q"


def test_every_setting_has_its_own_environment_name():
    """GIVEN every settings group WHEN inspected THEN each value has a string alias (the
    groups themselves have none and are not read from the environment)."""
    assert set(GROUPS) == {"redis", "approval", "experts", "services", "gitops", "policy",
                           "deploy", "ingest", "rag", "tasks", "dashboard"}
    for cls in (Settings, *GROUPS.values()):
        for name, field in cls.model_fields.items():
            if cls is Settings and name in GROUPS:
                assert field.validation_alias is None
            else:
                assert isinstance(field.validation_alias, str), (cls.__name__, name)


def test_a_variable_named_like_a_group_is_not_read(monkeypatch):
    """GIVEN REDIS, POLICY, RAG set to junk WHEN settings are built THEN no error, defaults."""
    for name in ("REDIS", "POLICY", "RAG", "INGEST"):
        monkeypatch.setenv(name, "junk")
    assert Settings().ingest.max_json_depth == 32
