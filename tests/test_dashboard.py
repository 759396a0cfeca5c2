"""What waits on a person (cortex_school.waiting) and the review dashboard, on the real Redis.

The app runs in FastAPI's TestClient over the real store; one test starts the real
``cortex-school dashboard`` command (uvicorn) on a free loopback port and talks HTTP to it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cortex_school.approval import GATE_ACTOR
from cortex_school.dashboard import DashboardConfigError, create_app
from cortex_school.dashboard.auth import PUBLIC, SESSION_COOKIE
from cortex_school.models import (
    Assessment,
    Decision,
    Finding,
    Risk,
    Status,
    ValidationReport,
    Verdict,
    utcnow,
)
from cortex_school.settings import DashboardSettings
from cortex_school.sweeper import SWEEPER
from cortex_school.waiting import Group, StuckLimits, current_reason, needs_person
from tests.conftest import ROOT
from tests.factories import make_improvement

TOKEN = "test-token-0123456789abcdef"
CLI = "from cortex_school.cli import main; main()"
LIMITS = StuckLimits(stuck_after=900, health_window=300)
POLICY_REASON = ("1 policy/schema violation(s), nothing committed: Deployment/cortex-system/web "
                 "at spec.template.spec.containers[0].image: image_tag: uses the mutable tag :latest")
STALE = "Auto-approved (relevance 0.96 >= 0.90, risk low)"


# -- records in each group -----------------------------------------------------------------

def _created(store, text: str, video: str, **extra):
    imp = make_improvement(text, video_id=video, **extra)
    store.create(imp, actor="test", reason="ingested")
    return imp


def _walk(store, iid: str, *targets: Status, at=None, actor: str = "test", **fields: str) -> None:
    for target in targets:
        result = store.transition(iid, target, actor=actor, reason=f"to {target.value}", at=at)
        assert result.applied, (target, result)
    if fields:
        store.set_fields(iid, fields)


def waiting_for_review(store, text="Add a PodDisruptionBudget for Qdrant", video="vidreview01", minutes_ago=30):
    """validated with an evidence-backed finding → pending_review by the gate."""
    imp = _created(store, text, video)
    at = utcnow() - timedelta(minutes=minutes_ago)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED, at=at)
    store.save_assessment(imp.id, Assessment(
        expert="architecture", backend="offline-rules", model="rules", verdict=Verdict.REVIEW,
        risk=Risk.MEDIUM, confidence=0.7, concerns=["voluntary evictions during node drains"],
        rationale="A PDB changes how drains behave; a person should confirm minAvailable."),
        actor="test", note="assessed")
    report = ValidationReport(passed=False, findings=[Finding(
        check="conflicts", conflict=True, reason="conflicts with the drain runbook",
        evidence=["docs/operations.md § Node drains: drains must never block for more than 10 minutes"])])
    store.transition(imp.id, Status.VALIDATED, actor="validate@w", reason="conflicts", at=at,
                     fields={"validation": report.model_dump_json()})
    decision = Decision(approved=False, reasons=["validation conflict: conflicts with the drain runbook"],
                        decided_by=GATE_ACTOR)
    store.transition(imp.id, Status.PENDING_REVIEW, actor=GATE_ACTOR, reason=decision.reason, at=at,
                     fields={"decision": decision.model_dump_json(), "review_reason": decision.reason})
    return imp


def policy_blocked(store, video="vidpolicy01", minutes_ago=90):
    """Auto-approved by the gate, then the implement stage's policy gate refused it: the
    decision on the hash still says "Auto-approved"."""
    imp = _created(store, "Deploy a web frontend for the school", video)
    at = utcnow() - timedelta(minutes=minutes_ago)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, at=at)
    decision = Decision(approved=True, reasons=[STALE], decided_by=GATE_ACTOR)
    store.transition(imp.id, Status.APPROVED, actor=GATE_ACTOR, reason=STALE, at=at,
                     fields={"decision": decision.model_dump_json()})
    _walk(store, imp.id, Status.IMPLEMENTING, at=at, actor="implement@w")
    plan = {"summary": "A Deployment and a Service for the frontend", "planner": "offline",
            "manual_steps": ["point the DNS record at the ingress"],
            "resources": [{"kind": "Deployment", "name": "web", "namespace": "cortex-system",
                           "purpose": "serves the frontend", "image": "nginx:latest", "replicas": 2}]}
    violations = [{"rule": "image_tag", "object": "Deployment/cortex-system/web",
                   "path": "spec.template.spec.containers[0].image", "action": "refuse",
                   "detail": "uses the mutable tag :latest"}]
    store.transition(imp.id, Status.PENDING_REVIEW, actor="implement@w", reason=POLICY_REASON, at=at,
                     fields={"review_reason": POLICY_REASON, "plan": json.dumps(plan),
                             "policy_violations": json.dumps(violations)})
    return imp


def implementation_stopped(store, video="vidimpl0001"):
    imp = _created(store, "Add an HPA for the embeddings service", video)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
          Status.IMPLEMENTING)
    reason = "not committed: no ArgoCD Application deploys apps/embeddings/hpa.yaml"
    store.transition(imp.id, Status.PENDING_REVIEW, actor="implement@w", reason=reason,
                     fields={"review_reason": reason})
    return imp, reason


def stage_failed(store, video="vidfail0001"):
    imp = _created(store, "Enable mTLS between services", video)
    _walk(store, imp.id, Status.CATEGORIZED)
    reason = "expert failure (security): ReadTimeout: the endpoint did not answer"
    store.transition(imp.id, Status.PENDING_REVIEW, actor="evaluate@w", reason=reason,
                     fields={"review_reason": reason})
    return imp, reason


def dead_lettered(store, video="viddead0001"):
    imp = _created(store, "Add a Redis exporter", video)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED)
    reason = ("dead-lettered: cortex_school.tasks.validate.validate was delivered 3 times and its "
              "worker died every time; not run again")
    store.set_fields(imp.id, {"dead_lettered": reason})
    store.transition(imp.id, Status.PENDING_REVIEW, actor="validate@w", reason=reason,
                     fields={"review_reason": reason})
    return imp, reason


def stuck_busy(store, video="vidstuck001"):
    imp = _created(store, "Add a ServiceMonitor for vLLM", video)
    _walk(store, imp.id, Status.CATEGORIZED, at=utcnow() - timedelta(hours=2))
    return imp


def stuck_handed_over(store, video="vidstuck002"):
    imp = _created(store, "Add a NetworkPolicy for Qdrant", video)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
          Status.IMPLEMENTING)
    reason = "stuck in implementing for 4000s; 3 resumes did not help"
    store.transition(imp.id, Status.PENDING_REVIEW, actor=SWEEPER, reason=reason,
                     fields={"review_reason": reason})
    return imp, reason


def merge_pending(store, video="vidmerge001"):
    imp = _created(store, "Add a PDB for the reranker", video)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
          Status.IMPLEMENTING)
    store.transition(imp.id, Status.COMMITTED, actor="implement@w", reason="pushed branch",
                     fields={"merge_pending": "true", "git_branch": f"improvement/{imp.id}",
                             "pull_request_url": "https://github.example/o/r/pull/7"})
    return imp


def rollback_failed(store, video="vidroll0001", healthy=False):
    imp = _created(store, "Raise the Qdrant memory limit", video)
    _walk(store, imp.id, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED,
          Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED)
    fields = ({"failure_reason": "pods: qdrant-0 CrashLoopBackOff", "rollback_status": "healthy again",
               "rollback_healthy": "true"} if healthy else
              {"failure_reason": "pods: qdrant-0 CrashLoopBackOff",
               "rollback_status": "revert failed: conflict in apps/knowledge/qdrant.yaml"})
    store.transition(imp.id, Status.FAILED, actor="rollback@w", reason="rolled back", fields=fields)
    return imp


# -- the one current reason ---------------------------------------------------------------

@pytest.fixture
def wstore(any_store):
    return any_store


def test_current_reason_names_the_group_and_the_real_reason_of_each_record(wstore):
    """GIVEN one improvement in each way of waiting on a person (and two that wait on nobody)
    WHEN current_reason is asked THEN each is in its group with the reason its last stage
    wrote, never the gate's stale "Auto-approved"."""
    store = wstore
    review = waiting_for_review(store)
    policy = policy_blocked(store)
    impl, impl_reason = implementation_stopped(store)
    failed, failed_reason = stage_failed(store)
    dead, dead_reason = dead_lettered(store)
    busy = stuck_busy(store)
    handed, handed_reason = stuck_handed_over(store)
    merge = merge_pending(store)
    broken = rollback_failed(store)
    clean = rollback_failed(store, video="vidroll0002", healthy=True)
    expected = {
        review.id: (Group.REVIEW, "validation conflict: conflicts with the drain runbook"),
        policy.id: (Group.POLICY, POLICY_REASON),
        impl.id: (Group.IMPLEMENTATION, impl_reason),
        failed.id: (Group.STAGE_FAILED, failed_reason),
        dead.id: (Group.DEAD_LETTER, dead_reason),
        handed.id: (Group.STUCK, handed_reason),
    }
    for iid, (group, reason) in expected.items():
        got = current_reason(store, iid, limits=LIMITS)
        assert got is not None and (got.group, got.reason) == (group, reason), iid
        assert "Auto-approved" not in got.reason
    stuck = current_reason(store, busy.id, limits=LIMITS)
    assert stuck.group is Group.STUCK and stuck.reason.startswith("stuck in categorized for 2h 0")
    assert 7100 < stuck.age_seconds < 7300
    pending = current_reason(store, merge.id, limits=LIMITS)
    assert pending.group is Group.MERGE_PENDING
    assert pending.reason == (f"branch improvement/{merge.id} waits for a person to merge it; "
                              "pull request https://github.example/o/r/pull/7")
    rollback = current_reason(store, broken.id, limits=LIMITS)
    assert rollback.group is Group.ROLLBACK_FAILED
    assert rollback.reason == ("rollback: revert failed: conflict in apps/knowledge/qdrant.yaml; "
                               "the change failed: pods: qdrant-0 CrashLoopBackOff")
    done = current_reason(store, clean.id, limits=LIMITS)
    assert done.group is None and done.reason == "pods: qdrant-0 CrashLoopBackOff (rollback: healthy again)"
    assert current_reason(store, "0" * 16, limits=LIMITS) is None


def test_a_review_after_the_person_approved_is_not_waiting_and_shows_the_approval(wstore):
    """GIVEN an improvement a person approved WHEN current_reason THEN it waits on nobody and
    the reason is the approval, not the review_reason left on the hash."""
    store = wstore
    imp = waiting_for_review(store)
    store.transition(imp.id, Status.APPROVED, actor="human:ana", reason="looks right")
    got = current_reason(store, imp.id, limits=LIMITS)
    assert got.group is None and got.reason == "looks right" and got.actor == "human:ana"


def test_needs_person_groups_everything_that_waits_oldest_first(wstore):
    """GIVEN reviews of different ages, a policy block, a merge pending and records that wait
    on nobody WHEN needs_person THEN the groups come in order, each oldest first, and nothing
    that waits on nobody is listed."""
    store = wstore
    newer = waiting_for_review(store, "Add a PDB for the docs service", "vidreview02", minutes_ago=5)
    older = waiting_for_review(store, "Add a PDB for Qdrant", "vidreview03", minutes_ago=300)
    policy = policy_blocked(store)
    merge = merge_pending(store)
    rollback_failed(store, video="vidroll0003", healthy=True)
    fresh = _created(store, "Fresh one", "vidfresh001")
    groups = needs_person(store, limits=LIMITS)
    assert list(groups) == [Group.POLICY, Group.MERGE_PENDING, Group.REVIEW]
    assert [w.improvement_id for w in groups[Group.REVIEW]] == [older.id, newer.id]
    assert groups[Group.REVIEW][0].age_seconds > groups[Group.REVIEW][1].age_seconds > 200
    assert [w.improvement_id for w in groups[Group.POLICY]] == [policy.id]
    assert [w.improvement_id for w in groups[Group.MERGE_PENDING]] == [merge.id]
    listed = {w.improvement_id for items in groups.values() for w in items}
    assert fresh.id not in listed and len(listed) == 4


def test_cli_review_list_and_list_show_the_current_reason_not_the_gates(store):
    """GIVEN an improvement auto-approved then blocked by policy WHEN `review list` and
    `list --stage pending_review` (and --json) THEN they show the policy reason and the
    group, never the stale "Auto-approved" decision."""
    from cortex_school.cli import app as cli

    policy = policy_blocked(store)
    runner = CliRunner()
    for args in (["review", "list"], ["list", "--stage", "pending_review"]):
        out = runner.invoke(cli, args, env={"COLUMNS": "250"})
        assert out.exit_code == 0, out.output
        assert policy.id in out.output and "policy/schema violation" in out.output
        assert "Auto-approved" not in out.output
    rows = json.loads(runner.invoke(cli, ["list", "--json", "--stage", "pending_review"]).stdout)
    assert [(r["id"], r["waiting"], r["reason"]) for r in rows] == [(policy.id, "policy", POLICY_REASON)]


# -- the dashboard ---------------------------------------------------------------------------

def make_app(store, **settings):
    return create_app(store, DashboardSettings(**({"token": TOKEN} | settings)), limits=LIMITS)


@pytest.fixture
def client(store):
    return TestClient(make_app(store), base_url="http://dash.test")


def login(client, name="ana", token=TOKEN):
    response = client.post("/login", data={"token": token, "name": name}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def snapshot(store, iid):
    return store.field(iid, "status"), len(store.timeline(iid))


def test_dashboard_refuses_to_start_without_authentication(store):
    """GIVEN no token and no trusted header (or a short token) WHEN the app or the command
    starts THEN it refuses with a clear error: it never runs open."""
    with pytest.raises(DashboardConfigError, match="needs authentication"):
        create_app(store, DashboardSettings(), limits=LIMITS)
    with pytest.raises(DashboardConfigError, match="too short"):
        create_app(store, DashboardSettings(token="short"), limits=LIMITS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_DASHBOARD_")}
    proc = subprocess.run([sys.executable, "-c", CLI, "dashboard", "--port", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "needs authentication" in proc.stderr and "CORTEX_DASHBOARD_TOKEN" in proc.stderr


def test_anonymous_and_wrong_credentials_are_refused_on_every_route(store, client):
    """GIVEN a waiting improvement WHEN every route is called (GET and POST) anonymously,
    with a wrong bearer, a forged cookie, or a cookie made with another token THEN each is
    401, shows nothing of the improvement, and changes nothing."""
    imp = waiting_for_review(store)
    before = snapshot(store, imp.id)
    app = client.app
    routes = {(m, r.path.replace("{improvement_id}", imp.id)) for r in app.routes
              if isinstance(r, APIRoute) for m in r.methods}
    routes |= {("GET", "/static/dashboard.css"), ("GET", "/no-such-page"), ("POST", "/")}
    protected = sorted(routes - PUBLIC)
    assert ("POST", f"/improvements/{imp.id}/approve") in protected and ("GET", "/api/needs-person") in protected
    other = TestClient(make_app(store, token="another-token-0123456789"), base_url="http://dash.test")
    login(other, token="another-token-0123456789")
    foreign_cookie = other.cookies[SESSION_COOKIE]
    attempts = [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                {"Cookie": f"{SESSION_COOKIE}=forged.value.sig"}, {"Cookie": f"{SESSION_COOKIE}={foreign_cookie}"}]
    for method, path in protected:
        for headers in attempts:
            response = client.request(method, path, headers=headers, data={"reason": "x"})
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert imp.id not in response.text and "drain runbook" not in response.text
    assert snapshot(store, imp.id) == before
    wrong = client.post("/login", data={"token": "nope", "name": "ana"}, follow_redirects=False)
    assert wrong.status_code == 401 and SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_login_then_the_list_shows_the_waiting_improvement_with_its_current_reason(store, client):
    """GIVEN an improvement auto-approved then blocked by policy, and a review WHEN a person
    logs in with the token THEN the cookie is HttpOnly and SameSite=Strict, and the list
    shows both, grouped, with the current reason and a human-readable age."""
    policy = policy_blocked(store)
    review = waiting_for_review(store)
    cookie = login(client).headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "signed in as <strong>ana (dashboard:" in html
    assert "Policy findings" in html and "Review after the gate" in html
    assert html.index("Policy findings") < html.index("Review after the gate")
    assert f'<a class="id" href="/improvements/{policy.id}">{policy.id}</a>' in html
    assert "uses the mutable tag :latest" in html and "Auto-approved" not in html
    assert "1h 30m" in html  # policy_blocked: 90 minutes ago
    data = client.get("/api/needs-person").json()
    assert [w["id"] for w in data["policy"]] == [policy.id] and data["review"][0]["id"] == review.id
    assert data["policy"][0]["reason"] == POLICY_REASON
    big = client.post("/logout", content=b"csrf=" + b"a" * 70000,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert big.status_code == 413
    out = client.post("/logout", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert out.status_code == 303 and 'cortex_session=""' in out.headers["set-cookie"]
    assert client.get("/").status_code == 401


def test_improvement_page_renders_the_evidence_plan_policy_findings_and_timeline(store, client):
    """GIVEN a reviewed improvement and a policy-blocked one WHEN their pages are opened THEN
    they show the assessment, the finding's evidence, the plan, the policy findings and
    the timeline in human-readable times (no epoch floats)."""
    review = waiting_for_review(store)
    policy = policy_blocked(store)
    login(client)
    html = client.get(f"/improvements/{review.id}").text
    assert "A PDB changes how drains behave" in html and "voluntary evictions during node drains" in html
    assert "docs/operations.md § Node drains: drains must never block for more than 10 minutes" in html
    assert "Approve</button>" in html and "Reject</button>" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(30m \d\ds ago\)", html)
    assert not re.search(r"\b1[78]\d{8}\.\d+", html)  # no epoch floats
    html = client.get(f"/improvements/{policy.id}").text
    assert "A Deployment and a Service for the frontend" in html and "cortex-system/web" in html
    assert "point the DNS record at the ingress" in html and "nginx:latest" in html
    assert "spec.template.spec.containers[0].image" in html and "uses the mutable tag :latest" in html
    assert "Waiting on a person (policy)" in html
    assert client.get("/improvements/" + "f" * 16).status_code == 404


def test_approve_moves_it_on_and_puts_the_reviewer_on_the_timeline(store, client, settings):
    """GIVEN a review WHEN a logged-in person approves it from its page THEN it is approved in
    Redis, the timeline's actor is that person, and its implementation is queued."""
    import redis as redis_lib

    imp = waiting_for_review(store)
    broker = redis_lib.Redis.from_url(settings.redis.url)
    broker.delete("implement.architecture")
    login(client, name="ana")
    token = csrf_of(client.get(f"/improvements/{imp.id}").text)
    response = client.post(f"/improvements/{imp.id}/approve", data={"csrf": token, "reason": "checked the drain runbook"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/improvements/{imp.id}?done=approved"
    assert store.get(imp.id).status is Status.APPROVED
    last = store.timeline(imp.id)[-1]
    assert last.to_status == "approved" and re.fullmatch(r"human:ana \(dashboard:[0-9a-f]{8}\)", last.actor)
    assert last.reason == "checked the drain runbook"
    assert broker.llen("implement.architecture") == 1  # pipeline.after_review sent it on
    broker.delete("implement.architecture")
    shown = client.get(response.headers["location"]).text
    assert "Approved: it is planned afresh" in shown and "Approve</button>" not in shown
    again = client.post(f"/improvements/{imp.id}/approve", data={"csrf": token}, follow_redirects=False)
    assert again.status_code == 409 and "not pending_review" in again.text


def test_reject_needs_a_reason_and_records_it_with_the_reviewer(store, client):
    """GIVEN a review WHEN rejected with an empty, blank, too long or control-character reason
    THEN 400 and nothing changes; WHEN rejected with a reason THEN it is rejected in Redis
    with that reason and the reviewer on the timeline."""
    imp = waiting_for_review(store)
    login(client, name="bo")
    token = csrf_of(client.get(f"/improvements/{imp.id}").text)
    before = snapshot(store, imp.id)
    for reason in (None, "", "   \n ", "x" * 1001, "bad\x1b[31m"):
        data = {"csrf": token} | ({} if reason is None else {"reason": reason})
        response = client.post(f"/improvements/{imp.id}/reject", data=data, follow_redirects=False)
        assert response.status_code == 400, reason
        assert snapshot(store, imp.id) == before
    response = client.post(f"/improvements/{imp.id}/reject", data={"csrf": token, "reason": "duplicate of <b>PDB</b> work"},
                           follow_redirects=False)
    assert response.status_code == 303
    assert store.get(imp.id).status is Status.REJECTED
    assert store.field(imp.id, "rejection_reason") == "duplicate of <b>PDB</b> work"
    last = store.timeline(imp.id)[-1]
    assert last.to_status == "rejected" and last.actor.startswith("human:bo (dashboard:")
    html = client.get(f"/improvements/{imp.id}").text
    assert "duplicate of &lt;b&gt;PDB&lt;/b&gt; work" in html and "<b>PDB</b>" not in html


def test_a_post_without_the_right_csrf_token_or_from_another_origin_changes_nothing(store, client):
    """GIVEN a logged-in person WHEN approve or reject is posted without a CSRF token, with a
    wrong one, with another session's, or with the right one from another Origin/Referer
    THEN 403 and nothing changes."""
    imp = waiting_for_review(store)
    login(client)
    token = csrf_of(client.get(f"/improvements/{imp.id}").text)
    second = TestClient(client.app, base_url="http://dash.test")
    login(second, name="eve")
    other_token = csrf_of(second.get("/").text)
    assert other_token != token
    before = snapshot(store, imp.id)
    cases = [({}, {}), ({"csrf": "0" * 64}, {}), ({"csrf": other_token}, {}),
             ({"csrf": token}, {"Origin": "http://evil.example"}), ({"csrf": token}, {"Origin": "null"}),
             ({"csrf": token}, {"Referer": "http://evil.example/page"})]
    for action in ("approve", "reject"):
        for form, headers in cases:
            response = client.post(f"/improvements/{imp.id}/{action}", data=form | {"reason": "because"},
                                   headers=headers, follow_redirects=False)
            assert response.status_code == 403, (action, form, headers)
            assert snapshot(store, imp.id) == before
    ok = client.post(f"/improvements/{imp.id}/reject", data={"csrf": token, "reason": "because"},
                     headers={"Origin": "http://dash.test"}, follow_redirects=False)
    assert ok.status_code == 303 and store.get(imp.id).status is Status.REJECTED


def test_trusted_header_mode_uses_the_proxys_identity(store):
    """GIVEN CORTEX_DASHBOARD_TRUSTED_HEADER=X-Forwarded-User and no token WHEN a request comes
    without the header THEN 401 (and the token login is off); WHEN with it THEN the page
    shows that identity and an approval records it as the actor."""
    imp = waiting_for_review(store)
    app = create_app(store, DashboardSettings(trusted_header="X-Forwarded-User"), limits=LIMITS)
    client = TestClient(app, base_url="http://dash.test")
    assert client.get("/").status_code == 401
    assert client.post("/login", data={"token": "", "name": "x"}).status_code == 401
    assert client.get("/", headers={"X-Forwarded-User": "bad\x01id"}).status_code == 401
    who = {"X-Forwarded-User": "alice@example.com"}
    page = client.get(f"/improvements/{imp.id}", headers=who)
    assert page.status_code == 200 and "signed in as <strong>alice@example.com</strong>" in page.text
    token = csrf_of(page.text)
    impostor = client.post(f"/improvements/{imp.id}/approve", data={"csrf": token},
                           headers={"X-Forwarded-User": "mallory@example.com"}, follow_redirects=False)
    assert impostor.status_code == 403  # the CSRF token is bound to the identity
    done = client.post(f"/improvements/{imp.id}/approve", data={"csrf": token}, headers=who,
                       follow_redirects=False)
    assert done.status_code == 303 and store.get(imp.id).status is Status.APPROVED
    assert store.timeline(imp.id)[-1].actor == "human:alice@example.com"


def test_hostile_input_is_escaped_and_never_reflected(store, client):
    """GIVEN a proposal whose text is HTML WHEN its page and the list render THEN it is
    escaped; a bad id in the path is a 404 that does not echo it."""
    imp = _created(store, '<script>alert("x")</script> and <img src=x onerror=alert(1)>', "vidhostile1")
    store.transition(imp.id, Status.PENDING_REVIEW, actor="route@w", reason="<b>boom</b>",
                     fields={"review_reason": "<b>boom</b>"})
    login(client)
    for path in ("/", f"/improvements/{imp.id}"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>boom</b>" not in html
        assert "&lt;script&gt;" in html and "&lt;b&gt;boom&lt;/b&gt;" in html
    for bad in ("%3Cscript%3Ealert(1)%3C%2Fscript%3E", "0123456789ABCDEF", "../../etc/passwd"):
        response = client.get(f"/improvements/{bad}")
        assert response.status_code == 404 and "script" not in response.text and "ABCDEF" not in response.text
    response = client.post("/improvements/not-an-id/approve", data={"csrf": csrf_of(client.get("/").text)})
    assert response.status_code == 404


def test_the_command_serves_the_dashboard_on_a_free_loopback_port(store):
    """GIVEN CORTEX_DASHBOARD_TOKEN and a free port WHEN `cortex-school dashboard` runs THEN it
    answers over real HTTP: 401 anonymous, the list with the bearer token."""
    imp = waiting_for_review(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"CORTEX_DASHBOARD_TOKEN": TOKEN, "CORTEX_DASHBOARD_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "dashboard"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "dashboard did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/", timeout=5).status_code == 401
        page = httpx.get(f"{base}/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert page.status_code == 200 and imp.id in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        css = httpx.get(f"{base}/static/dashboard.css", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
