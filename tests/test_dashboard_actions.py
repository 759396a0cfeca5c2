"""The dashboard's second slice, in FastAPI's TestClient over the real Redis and a real
local GitOps remote: the manifests as a diff, re-run and roll back, the pipeline page, its
JSON and the flag / circuit-breaker toggle."""

from __future__ import annotations

import json
import re

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote
from cortex_school.dashboard import create_app
from cortex_school.dashboard.changes import ChangeViewer, unified
from cortex_school.dashboard.pipeline_view import Consumers, Seen
from cortex_school.models import Status
from cortex_school.settings import DashboardSettings
from tests.conftest import ROOT
from tests.test_dashboard import LIMITS, TOKEN, _walk, csrf_of, login, policy_blocked, waiting_for_review

SEED = ROOT / "examples" / "platform" / "gitops"
AUTHOR = "Cortex School <cortex@example.test>"
QUEUES = ("route", "validate", "rollback")


@pytest.fixture
def remote(tmp_path):
    return ensure_bare_remote(tmp_path / "remote.git", "main", SEED)


@pytest.fixture
def clone_of(remote, tmp_path):
    def make(name: str = "dashboard") -> GitOpsRepo:
        return GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / name, author=AUTHOR)
    return make


@pytest.fixture
def broker(settings):
    r = redis_lib.Redis.from_url(settings.redis.url)
    r.delete(*QUEUES, "implement.architecture", "implement.integration")
    yield r
    r.delete(*QUEUES, "implement.architecture", "implement.integration")


def make_client(store, clone_of, seen=None, **kwargs):
    from cortex_school.settings import get_settings

    consumers = Consumers(lambda: seen or Seen({}, [], "no worker answered within 1s"), ttl=0)
    app = create_app(store, DashboardSettings(token=TOKEN), limits=LIMITS, queues=QUEUES,
                     changes=ChangeViewer(clone_of, get_settings().policy), consumers=consumers,
                     breaker=(3, 3600), **kwargs)
    client = TestClient(app, base_url="http://dash.test")
    login(client, name="ana")
    return client


def test_unified_diff_of_a_new_and_a_changed_file():
    """GIVEN a new file and a changed one WHEN diffed THEN /dev/null → b/ for the new one and
    -/+ lines for the change."""
    new = unified("apps/x.yaml", None, "kind: ConfigMap\n")
    assert new.splitlines()[:2] == ["--- /dev/null", "+++ b/apps/x.yaml"] and "+kind: ConfigMap" in new
    changed = unified("apps/x.yaml", "a: 1\nb: 2\n", "a: 1\nb: 3\n")
    assert "-b: 2" in changed and "+b: 3" in changed and "--- a/apps/x.yaml" in changed


def test_the_planned_manifests_are_a_diff_against_the_repo_and_nothing_is_committed(store, clone_of, remote):
    """GIVEN an improvement the policy gate sent back, with its stored plan WHEN its page is
    read THEN the Deployment the stage would commit shows as added lines against the
    repository's branch, and the remote's branch has not moved."""
    import git

    before = git.Repo(remote).commit("main").hexsha
    imp = policy_blocked(store)
    client = make_client(store, clone_of)
    html = client.get(f"/improvements/{imp.id}").text
    assert "Would be committed (the stored plan rendered now; not committed), against main at" in html
    assert re.search(r'<span class="d-file">\+\+\+ b/apps/cortex-system/[^<]*web[^<]*\.yaml</span>', html)
    assert '<span class="d-add">+kind: Deployment</span>' in html
    assert re.search(r'<span class="d-add">\+ +image: nginx:latest</span>', html)
    assert git.Repo(remote).commit("main").hexsha == before


def test_a_committed_change_shows_git_show_of_its_commit(store, clone_of):
    """GIVEN a committed improvement and its commit in the remote WHEN its page is read THEN
    the page shows that commit's patch (git show), and a roll-back form."""
    imp = waiting_for_review(store, text="Add a ConfigMap for the reranker", video="vidcommit01")
    writer = clone_of("writer")
    writer.sync()
    result = writer.commit_improvement(imp.id, {"apps/cortex-system/reranker-config.yaml":
                                                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: reranker\n"},
                                       f"Add the reranker config\n\nImprovement: {imp.id}\n")
    _walk(store, imp.id, Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED)
    store.set_fields(imp.id, {"git_commit": result.merge_commit or result.commit,
                              "git_files": json.dumps(result.files), "merge_pending": "false"})
    client = make_client(store, clone_of)
    html = client.get(f"/improvements/{imp.id}").text
    sha = (result.merge_commit or result.commit)[:12]
    assert f"Committed: git show {sha}" in html
    assert '<span class="d-add">+kind: ConfigMap</span>' in html
    assert 'action="/improvements/' + imp.id + '/rollback"' in html


def test_roll_back_needs_a_reason_then_queues_the_rollback_with_the_person_on_the_timeline(store, clone_of, broker):
    """GIVEN a deployed improvement WHEN rolled back from its page without a reason THEN 400 and
    nothing changes; WITH one THEN the rollback is queued, rollback_requested names the person,
    and the timeline says who asked and why."""
    imp = waiting_for_review(store, text="Raise the reranker replicas", video="vidrollb001")
    _walk(store, imp.id, Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED)
    client = make_client(store, clone_of)
    token = csrf_of(client.get(f"/improvements/{imp.id}").text)
    empty = client.post(f"/improvements/{imp.id}/rollback", data={"csrf": token, "reason": "  "},
                        follow_redirects=False)
    assert empty.status_code == 400 and "A reason is required to roll back" in empty.text
    assert store.field(imp.id, "rollback_requested") is None and broker.llen("rollback") == 0
    done = client.post(f"/improvements/{imp.id}/rollback", data={"csrf": token, "reason": "latency <doubled>"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/improvements/{imp.id}?done=rollback"
    assert broker.llen("rollback") == 1
    assert re.fullmatch(r"manual rollback by ana \(dashboard:[0-9a-f]{8}\): latency <doubled>",
                        store.field(imp.id, "rollback_requested"))
    last = store.timeline(imp.id)[-1]
    assert last.actor.startswith("human:ana (") and last.reason == "rollback requested: latency <doubled>"
    page = client.get(done.headers["location"]).text
    assert "Rollback queued" in page and "latency &lt;doubled&gt;" in page and "<doubled>" not in page


def test_roll_back_of_what_is_not_delivered_is_refused(store, clone_of, broker):
    """GIVEN an improvement waiting for review WHEN a rollback is posted THEN 409, nothing queued."""
    imp = waiting_for_review(store)
    client = make_client(store, clone_of)
    token = csrf_of(client.get(f"/improvements/{imp.id}").text)
    out = client.post(f"/improvements/{imp.id}/rollback", data={"csrf": token, "reason": "why not"},
                      follow_redirects=False)
    assert out.status_code == 409 and "nothing to roll back" in out.text
    assert broker.llen("rollback") == 0


def test_rerun_queues_the_stage_it_sits_in_and_notes_who_asked(store, clone_of, broker):
    """GIVEN an approved improvement WHEN its stage is re-run from the page THEN its implement
    task is queued and the timeline notes the person; a pending_review one is refused (409)."""
    imp = waiting_for_review(store, text="Add a PDB for the embeddings service", video="vidrerun001")
    _walk(store, imp.id, Status.APPROVED)
    client = make_client(store, clone_of)
    html = client.get(f"/improvements/{imp.id}").text
    assert "Re-run stage</button>" in html and "/rollback" not in html
    out = client.post(f"/improvements/{imp.id}/rerun", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert out.status_code == 303
    queued = sum(broker.llen(q) for q in ("implement.architecture", "implement.integration"))
    assert queued == 1
    last = store.timeline(imp.id)[-1]
    assert last.actor.startswith("human:ana (") and last.reason == "re-run of the approved stage requested"
    waiting = waiting_for_review(store, text="Something else entirely", video="vidrerun002")
    refused = client.post(f"/improvements/{waiting.id}/rerun", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert refused.status_code == 409 and "no stage acts on it" in refused.text


def test_pipeline_page_and_json_show_queues_without_consumers_in_words(store, clone_of, broker):
    """GIVEN work in two queues and a worker consuming only one of them WHEN the pipeline page
    and /api/pipeline are read THEN the funnel counts, each queue's depth and consumers, and
    the queue nobody consumes is labelled NO CONSUMER (not colour only)."""
    waiting_for_review(store)
    broker.rpush("route", "m1", "m2")
    broker.rpush("validate", "m3")
    seen = Seen({"route": 1}, ["celery@w1"], None)
    client = make_client(store, clone_of, seen=seen)
    data = client.get("/api/pipeline").json()
    assert data["funnel"]["pending_review"] == 1
    rows = {q["name"]: q for q in data["queues"]}
    assert rows["route"] == {"name": "route", "depth": 2, "consumers": 1, "starved": False}
    assert rows["validate"] == {"name": "validate", "depth": 1, "consumers": 0, "starved": True}
    assert data["starved"] == ["validate"] and data["workers"] == ["celery@w1"]
    page = client.get("/pipeline")
    html = page.text
    assert re.search(r'<tr data-queue="validate" class="starved">.*?NO CONSUMER', html, re.S)
    assert "Work waiting with no consumer: validate" in html
    assert '<script src="/static/pipeline.js" defer></script>' in html and "<script>" not in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/pipeline.js").status_code == 200


def test_anonymous_requests_to_the_new_routes_are_refused(store, clone_of):
    """GIVEN no login WHEN the pipeline page, its JSON, its script or a toggle are requested
    THEN 401, and no flag changes."""
    consumers = Consumers(lambda: Seen(), ttl=0)
    app = create_app(store, DashboardSettings(token=TOKEN), limits=LIMITS, queues=QUEUES, consumers=consumers)
    anon = TestClient(app, base_url="http://dash.test")
    for path in ("/pipeline", "/api/pipeline", "/static/pipeline.js"):
        assert anon.get(path).status_code == 401, path
    imp = waiting_for_review(store)
    for path in ("/flags/auto_approve_none", f"/improvements/{imp.id}/rerun", f"/improvements/{imp.id}/rollback"):
        assert anon.post(path, data={"value": "true", "reason": "x"}).status_code == 401, path
    assert store.flags()["auto_approve_none"] is False


def test_flag_toggle_needs_csrf_and_a_reason_and_records_who(store, clone_of):
    """GIVEN a logged-in person WHEN the breaker's flag is toggled without CSRF, without a
    reason, then with both THEN 403, 400, and finally the flag is set with who and why beside
    it, shown escaped on the page."""
    client = make_client(store, clone_of)
    html = client.get("/pipeline").text
    token = csrf_of(html)
    assert client.post("/flags/auto_approve_none", data={"value": "true", "reason": "x"},
                       follow_redirects=False).status_code == 403
    assert client.post("/flags/auto_approve_none", data={"csrf": token, "value": "true"},
                       follow_redirects=False).status_code == 400
    assert client.post("/flags/no_such_flag", data={"csrf": token, "value": "true", "reason": "x"},
                       follow_redirects=False).status_code == 404
    assert client.post("/flags/auto_approve_none", data={"csrf": token, "value": "maybe", "reason": "x"},
                       follow_redirects=False).status_code == 400
    assert store.flags()["auto_approve_none"] is False
    out = client.post("/flags/auto_approve_none", data={"csrf": token, "value": "true",
                                                        "reason": "<b>two</b> bad deploys"}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/pipeline?done=flag"
    assert store.flags()["auto_approve_none"] is True
    assert re.fullmatch(r"set to true by ana \(dashboard:[0-9a-f]{8}\): <b>two</b> bad deploys",
                        store.flag_reason("auto_approve_none"))
    page = client.get("/pipeline?done=flag").text
    assert "Auto-approval is PAUSED" in page and "&lt;b&gt;two&lt;/b&gt;" in page and "<b>two</b>" not in page
    assert "Resume auto-approval</button>" in page


def test_consumers_are_asked_at_most_once_per_ttl():
    """GIVEN a Consumers cache with a long ttl WHEN read three times THEN Celery is asked once."""
    calls = []

    def ask():
        calls.append(1)
        return Seen({"route": 2}, ["w"], None, at=__import__("time").monotonic())

    consumers = Consumers(ask, ttl=60)
    assert [consumers().per_queue["route"] for _ in range(3)] == [2, 2, 2] and len(calls) == 1


def test_the_demo_serves_the_dashboard_on_loopback_with_its_own_token(store, remote):
    """GIVEN the demo's dashboard helper WHEN it starts THEN it answers on 127.0.0.1 with the
    generated token only (anonymous: 401), and stops when asked."""
    import httpx

    from cortex_school.cli.demo import start_dashboard

    web = start_dashboard(store, remote=str(remote))
    assert web is not None and web.url.startswith("http://127.0.0.1:") and len(web.token) >= 32
    try:
        assert httpx.get(web.url, timeout=5).status_code == 401
        ok = httpx.get(web.url + "pipeline", headers={"Authorization": f"Bearer {web.token}"}, timeout=10)
        assert ok.status_code == 200 and "Funnel" in ok.text
    finally:
        web.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(web.url + "healthz", timeout=2)


def test_the_cli_shares_the_functions_and_records_who_and_why(store, broker):
    """GIVEN the CLI WHEN a flag is set with --reason and --by, and a delivered change is rolled
    back THEN the flag's reason names the person, and the rollback is noted on the timeline."""
    from typer.testing import CliRunner

    from cortex_school.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["flags", "set", "auto_approve_all", "true", "--reason", "incident 42", "--by", "bob"])
    assert out.exit_code == 0, out.output
    assert store.flag_reason("auto_approve_all") == "set to true by bob: incident 42"
    imp = waiting_for_review(store, text="Tune the reranker", video="vidcli00001")
    out = runner.invoke(app, ["rollback", imp.id, "--reason", "why not", "--by", "bob"])
    assert out.exit_code == 1 and "nothing to roll back" in out.output
    _walk(store, imp.id, Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED)
    out = runner.invoke(app, ["rollback", imp.id, "--reason", "replaced", "--by", "bob"])
    assert out.exit_code == 0 and "rollback queued (manual rollback by bob: replaced)" in out.output
    assert store.timeline(imp.id)[-1].actor == "human:bob" and broker.llen("rollback") == 1
