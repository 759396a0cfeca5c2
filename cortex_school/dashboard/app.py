"""The dashboard's web app: FastAPI routes over the state store, Jinja templates shipped
with the package (autoescaped), no CDN and no front-end build.

Pages: **Needs a person** (``/``: :func:`cortex_school.waiting.needs_person`, grouped,
oldest first); **an improvement** (``/improvements/<id>``: proposal, video,
assessments, findings with evidence, plan, the manifests as a diff against the GitOps
repository (:mod:`cortex_school.dashboard.changes`), policy findings, timeline) with
approve and reject (:func:`cortex_school.pipeline.decide_review`), re-run the stage
(:func:`~cortex_school.pipeline.rerun_stage`) and roll back
(:func:`~cortex_school.pipeline.manual_rollback`), the functions the CLI calls; and
**the pipeline** (``/pipeline``: funnel, queues and their consumers, workers, flags and
the circuit breaker with a toggle (:func:`~cortex_school.pipeline.set_override`),
rollbacks, alerts), which ``static/pipeline.js`` refreshes from ``/api/pipeline``.
``/api/needs-person`` is the waiting list as JSON.

Every route but the login page and ``/healthz`` requires a principal
(:mod:`cortex_school.dashboard.auth`): the middleware refuses the rest with 401 before
routing, so a route added later is protected without doing anything, and an anonymous
caller cannot tell which paths exist. Every POST checks the principal's CSRF token
(:func:`_checked_form`) and the middleware checks its Origin. GET never changes state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from cortex_school.dashboard.auth import NAME_PATTERN, PUBLIC, SESSION_COOKIE, DashboardAuth, Principal, same_origin
from cortex_school.dashboard.changes import Change, ChangeViewer
from cortex_school.dashboard.pipeline_view import BREAKER_FLAG, Consumers, snapshot
from cortex_school.delivery.merge import human_duration
from cortex_school.models import IMPROVEMENT_ID_PATTERN, Improvement, ImprovementType, Status, utcnow
from cortex_school.pipeline import DELIVERY, RERUNNABLE
from cortex_school.settings import DashboardSettings, Settings, get_settings
from cortex_school.store import OVERRIDE_FLAGS, RedisStore, TransitionRefused
from cortex_school.waiting import GROUP_TITLES, StuckLimits, Waiting, current_reason, needs_person

if TYPE_CHECKING:
    from cortex_school.clients.gitops import GitOpsRepo

HERE = Path(__file__).parent
MAX_REASON = 1000  # characters of a review reason
MAX_BODY = 64 * 1024  # bytes of a POST body
# Fixed messages a redirect may ask the page to show: nothing from the query is echoed.
NOTICES = {"approved": "Approved: it is planned afresh and implemented.", "acknowledged": "Acknowledged.",
           "rejected": "Rejected.", "rerun": "Re-run queued: the stage it sits in runs again.",
           "rollback": "Rollback queued: the change is reverted, refreshed and checked.",
           "flag": "Flag set."}

ReviewFn = Callable[..., Any]


class DashboardConfigError(RuntimeError):
    """The settings would run the dashboard open (no token and no trusted header)."""


def create_app(store: RedisStore, settings: DashboardSettings, *, limits: StuckLimits,
               bridge_dead_letters: str | None = None, decide: ReviewFn | None = None,
               changes: ChangeViewer | None = None, queues: tuple[str, ...] = (),
               consumers: Consumers | None = None, breaker: tuple[int, int] = (3, 3600),
               rerun: ReviewFn | None = None, roll_back: ReviewFn | None = None,
               set_flag: ReviewFn | None = None) -> FastAPI:
    """The dashboard for ``store``. Raises :class:`DashboardConfigError` when the settings
    leave it without authentication.

    ``decide``, ``rerun``, ``roll_back``, ``set_flag``: what the buttons call (default
    :mod:`cortex_school.pipeline`'s ``decide_review``, ``rerun_stage``,
    ``manual_rollback``, ``set_override``, as the CLI; tests may pass their own).
    ``changes`` reads the GitOps repository for the diff (None: the page says it is not
    configured); ``queues`` are the Celery queues shown with ``consumers`` (default: ask
    Celery); ``breaker`` is (rollback limit, window in seconds)."""
    problem = settings.auth_problem()
    if problem is not None:
        raise DashboardConfigError(problem)
    from cortex_school import pipeline

    review = decide or pipeline.decide_review
    rerun_fn = rerun or pipeline.rerun_stage
    rollback_fn = roll_back or pipeline.manual_rollback
    flag_fn = set_flag or pipeline.set_override
    seen = consumers or Consumers()
    auth = DashboardAuth(settings)
    templates = _templates()
    css = (HERE / "static" / "dashboard.css").read_text()
    css_hash = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'self' 'sha256-{css_hash}'; img-src 'self'; "
           "script-src 'self'; connect-src 'self'; "
           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

    app = FastAPI(title="Cortex School review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(inline_css=css, **context)
        return HTMLResponse(html, status_code=status_code)

    def refused(request: Request, status_code: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status_code)
        return page("error.html", status_code, title=f"{status_code}", message=message,
                    principal=None, csrf="", login=status_code == 401)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        method = request.method
        if method not in ("GET", "HEAD", "POST"):
            response = refused(request, 405, "Method not allowed.")
        elif method == "POST" and not same_origin(request):
            response = refused(request, 403, "Cross-origin request refused.")
        elif method == "POST" and _too_large(request.headers.get("content-length")):
            response = refused(request, 413, "Request too large.")
        elif ("GET" if method == "HEAD" else method, request.url.path) in PUBLIC:
            response = await call_next(request)
        else:
            principal = auth.principal(request)
            if principal is None:
                response = refused(request, 401, "Authentication required.")
                response.headers["WWW-Authenticate"] = 'Bearer realm="cortex-school"'
            else:
                request.state.principal = principal
                response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        return refused(request, 400, "Bad request.")  # never echo the input back

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {404: "Not found.", 405: "Method not allowed."}
        return refused(request, exc.status_code, messages.get(exc.status_code, "Request refused."))

    async def checked_form(request: Request) -> tuple[Principal, FormData] | Response:
        """The POST's form, once its CSRF token is the principal's; else the refusal."""
        principal: Principal = request.state.principal
        form = await request.form(max_files=0, max_fields=10)
        presented = form.get("csrf")
        if not isinstance(presented, str) or not auth.csrf_ok(principal, presented):
            return refused(request, 403, "Missing or wrong CSRF token: reload the page and try again.")
        return principal, form

    # -- public --------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/login")
    def login_form() -> Response:
        return page("login.html", principal=None, csrf="", error=None,
                    token_login=settings.token is not None, header=settings.trusted_header)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=5)
        token, name = form.get("token"), form.get("name") or ""
        if not isinstance(token, str) or not isinstance(name, str) or not auth.token_matches(token):
            return page("login.html", 401, principal=None, csrf="", error="Wrong token.",
                        token_login=settings.token is not None, header=settings.trusted_header)
        name = name.strip()
        if name and not NAME_PATTERN.match(name):
            return page("login.html", 400, principal=None, csrf="",
                        error="A name is up to 64 letters, digits, spaces and . _ @ + -",
                        token_login=True, header=settings.trusted_header)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, auth.new_session(name), max_age=settings.session_seconds,
                            httponly=True, samesite="strict", secure=settings.secure_cookie, path="/")
        return response

    # -- authenticated -------------------------------------------------------------------
    @app.post("/logout")
    async def logout(request: Request) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=settings.secure_cookie)
        return response

    @app.get("/")
    def needs_a_person(request: Request) -> Response:
        principal: Principal = request.state.principal
        groups = needs_person(store, limits=limits)
        dead = {"tasks": store.dead_letter_count()}
        if bridge_dead_letters:
            dead["documents"] = store.dead_letter_count(bridge_dead_letters)
        return page("needs_person.html", principal=principal, csrf=auth.csrf_token(principal),
                    groups=[(g, GROUP_TITLES[g], items) for g, items in groups.items()],
                    total=sum(len(items) for items in groups.values()), dead=dead,
                    now=utcnow())

    @app.get("/api/needs-person")
    def needs_a_person_json() -> Response:
        groups = needs_person(store, limits=limits)
        return JSONResponse({g.value: [_waiting_json(w) for w in items] for g, items in groups.items()})

    @app.get("/improvements/{improvement_id}")
    def improvement_page(request: Request, improvement_id: str, done: str | None = None) -> Response:
        principal: Principal = request.state.principal
        if not IMPROVEMENT_ID_PATTERN.match(improvement_id):
            return refused(request, 404, "No such improvement.")
        try:
            improvement = store.get(improvement_id)
        except (ValidationError, ValueError):
            return refused(request, 500, "This improvement's record cannot be read; see "
                           "`cortex-school show --json`.")
        if improvement is None:
            return refused(request, 404, "No such improvement.")
        context = _improvement_context(store, improvement, limits)
        change = (changes.change(improvement, context["fields"]) if changes is not None else
                  Change("unavailable", "Manifests", note="No GitOps repository configured for this dashboard."))
        return page("improvement.html", principal=principal, csrf=auth.csrf_token(principal),
                    notice=NOTICES.get(done or ""), change=change, **context)

    @app.post("/improvements/{improvement_id}/approve")
    async def approve(request: Request, improvement_id: str) -> Response:
        return await decide_on(request, improvement_id, approve=True)

    @app.post("/improvements/{improvement_id}/reject")
    async def reject(request: Request, improvement_id: str) -> Response:
        return await decide_on(request, improvement_id, approve=False)

    async def decide_on(request: Request, improvement_id: str, *, approve: bool) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        principal, form = checked
        if not IMPROVEMENT_ID_PATTERN.match(improvement_id):
            return refused(request, 404, "No such improvement.")
        raw = form.get("reason")
        reason = raw.strip() if isinstance(raw, str) else ""
        if approve and not reason:
            reason = "approved on review"
        problem = _reason_problem(reason)
        if problem is not None:
            return refused(request, 400, problem)
        try:
            done = review(store, improvement_id, approve=approve, reviewer=principal.reviewer,
                          reason=reason)
        except TransitionRefused as exc:
            return refused(request, 409, f"Nothing changed: {exc}.")
        return RedirectResponse(f"/improvements/{improvement_id}?done={done.outcome.status}", status_code=303)

    @app.post("/improvements/{improvement_id}/rerun")
    async def rerun_stage(request: Request, improvement_id: str) -> Response:
        return await act_on(request, improvement_id, "rerun", reason_required=False)

    @app.post("/improvements/{improvement_id}/rollback")
    async def roll_back_change(request: Request, improvement_id: str) -> Response:
        return await act_on(request, improvement_id, "rollback", reason_required=True)

    async def act_on(request: Request, improvement_id: str, action: str, *, reason_required: bool) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        principal, form = checked
        if not IMPROVEMENT_ID_PATTERN.match(improvement_id) or not store.exists(improvement_id):
            return refused(request, 404, "No such improvement.")
        raw = form.get("reason")
        reason = raw.strip() if isinstance(raw, str) else ""
        if reason_required or reason:
            problem = _reason_problem(reason, action="roll back" if action == "rollback" else action)
            if problem is not None:
                return refused(request, 400, problem)
        try:
            if action == "rerun":
                rerun_fn(store, improvement_id, by=principal.reviewer)
            else:
                rollback_fn(store, improvement_id, by=principal.reviewer, reason=reason)
        except pipeline.NotNow as exc:
            return refused(request, 409, f"Nothing changed: {exc}.")
        return RedirectResponse(f"/improvements/{improvement_id}?done={action}", status_code=303)

    # -- the pipeline ---------------------------------------------------------------
    def pipeline_now() -> dict[str, Any]:
        return snapshot(store, queues, seen(), breaker_limit=breaker[0], breaker_window=breaker[1])

    @app.get("/pipeline")
    def pipeline_page(request: Request, done: str | None = None) -> Response:
        principal: Principal = request.state.principal
        return page("pipeline.html", principal=principal, csrf=auth.csrf_token(principal),
                    notice=NOTICES.get(done or ""), now=pipeline_now(), breaker_flag=BREAKER_FLAG,
                    max_reason=MAX_REASON)

    @app.get("/api/pipeline")
    def pipeline_json() -> Response:
        return JSONResponse(pipeline_now())

    @app.post("/flags/{name}")
    async def toggle_flag(request: Request, name: str) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        principal, form = checked
        if name not in OVERRIDE_FLAGS:
            return refused(request, 404, "No such flag.")
        value, raw = form.get("value"), form.get("reason")
        if value not in ("true", "false"):
            return refused(request, 400, "A flag is set to true or false: nothing changed.")
        reason = raw.strip() if isinstance(raw, str) else ""
        problem = _reason_problem(reason, action="change a flag")
        if problem is not None:
            return refused(request, 400, problem)
        flag_fn(store, name, value == "true", by=principal.reviewer, reason=reason)
        return RedirectResponse("/pipeline?done=flag", status_code=303)

    return app


def _too_large(length: str | None) -> bool:
    """A declared body over :data:`MAX_BODY`, or a length that is not a number. (A chunked
    body has none; the form parser's own part limits bound it.)"""
    if length is None:
        return False
    return not length.strip().isdigit() or int(length) > MAX_BODY


def _reason_problem(reason: str, *, action: str = "reject") -> str | None:
    if not reason:
        return f"A reason is required to {action}: nothing changed."
    if len(reason) > MAX_REASON:
        return f"A reason is at most {MAX_REASON} characters: nothing changed."
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in reason.replace("\r\n", "\n")):
        return "A reason may not contain control characters: nothing changed."
    return None


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = human_duration
    env.filters["when"] = _when
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True,
                                                     default=str)
    return env


def _when(value: datetime | str | None) -> str:
    """``2026-12-02 16:04:05 UTC (3m 12s ago)``: times for people, not epoch floats."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        at = value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    ago = (utcnow() - at).total_seconds()
    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when} ({human_duration(ago)} ago)" if ago >= 0 else when


def _waiting_json(w: Waiting) -> dict[str, object]:
    return {"id": w.improvement_id, "status": w.status, "group": w.group.value if w.group else None,
            "reason": w.reason, "since": w.since.isoformat() if w.since else None,
            "age_seconds": round(w.age_seconds, 1), "title": w.title, "description": w.description}


def _json_field(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _improvement_context(store: RedisStore, improvement: Improvement, limits: StuckLimits) -> dict[str, Any]:
    """Everything the improvement page shows, read once."""
    fields = store.raw_fields(improvement.id)
    plan = _json_field(fields.get("plan"))
    resources = []
    if isinstance(plan, dict):
        for r in plan.get("resources") or []:
            if isinstance(r, dict):
                rest = {k: v for k, v in r.items() if k not in ("kind", "name", "namespace", "purpose") and v}
                resources.append({"kind": r.get("kind"), "name": r.get("name"), "namespace": r.get("namespace"),
                                  "purpose": r.get("purpose"), "rest": rest})
    violations = _json_field(fields.get("policy_violations"))
    delivery = improvement.delivery
    delivered = {k: v for k, v in {
        "git commit": delivery.git_commit, "git branch": delivery.git_branch,
        "files": ", ".join(delivery.git_files), "ArgoCD applications": ", ".join(delivery.argocd_apps),
        "pull request": delivery.pull_request_url, "deployed": _when(delivery.deployed_at) if delivery.deployed_at else None,
        "verified": _when(delivery.verified_at) if delivery.verified_at else None,
        "rollback": delivery.rollback_status, "failure": delivery.failure_reason,
    }.items() if v}
    return {
        "imp": improvement,
        "current": current_reason(store, improvement.id, limits=limits),
        "assessments": sorted(store.assessments(improvement.id).items()),
        "findings": improvement.validation.findings if improvement.validation else [],
        "plan": plan if isinstance(plan, dict) else None,
        "resources": resources,
        "violations": [v for v in violations if isinstance(v, dict)] if isinstance(violations, list) else [],
        "delivered": delivered,
        "timeline": store.timeline(improvement.id),
        "fields": fields,
        "reviewable": improvement.status is Status.PENDING_REVIEW,
        "rerunnable": improvement.status in RERUNNABLE,
        "delivered_now": improvement.status in DELIVERY,
        "concept": improvement.type is ImprovementType.CONCEPT,
        "max_reason": MAX_REASON,
    }


def app_from_settings(store: RedisStore, settings: Settings | None = None, *,
                      dashboard: DashboardSettings | None = None, remote: str | None = None) -> FastAPI:
    """The dashboard as ``cortex-school dashboard`` and the demo run it: this process's own
    clone of the GitOps repository (``remote`` instead of GITOPS_REMOTE: the demo's local
    one) for the diffs, the Celery queues of ``celeryconfig`` with consumers asked of the
    workers, the circuit breaker's settings."""
    from celeryconfig import ALL_QUEUES
    from cortex_school.intake.bridge import dead_letter_list
    from cortex_school.runtime import get_gitops_repo

    settings = settings or get_settings()
    if remote is not None:
        settings = settings.model_copy(update={"gitops": settings.gitops.model_copy(update={"remote_url": remote})})
    limits = StuckLimits(stuck_after=settings.stuck_after_seconds,
                         health_window=settings.services.health_check_duration)
    approval = settings.approval
    return create_app(store, dashboard or settings.dashboard, limits=limits,
                      bridge_dead_letters=dead_letter_list(settings.ingest.bridge_list),
                      changes=ChangeViewer(lambda: _repo(settings) if remote is not None else get_gitops_repo(),
                                           settings.policy),
                      queues=ALL_QUEUES,
                      breaker=(approval.circuit_breaker_rollbacks, approval.circuit_breaker_window_seconds))


def _repo(settings: Settings) -> GitOpsRepo:
    """A clone of ``settings``' GitOps remote (runtime's reads the process-wide settings)."""
    from cortex_school.clients.gitops import GitOpsRepo

    cfg = settings.gitops
    return GitOpsRepo(remote=cfg.remote, branch=cfg.github_branch,
                      workdir=cfg.workdir or settings.data_dir / "gitops", author=cfg.commit_author,
                      mode=cfg.mode, push_attempts=cfg.push_attempts, username=cfg.username,
                      secret=cfg.secret)
