"""Who is asking, and whether a state-changing request really comes from the dashboard's page.

Three ways in, checked in this order on every request except the login page and the
health probe (:data:`PUBLIC`):

* the trusted header (``CORTEX_DASHBOARD_TRUSTED_HEADER``, off by default), set by an
  authenticating proxy: its value is the reviewer. Present but unreadable: refused;
* ``Authorization: Bearer <CORTEX_DASHBOARD_TOKEN>``, compared in constant time; a wrong
  bearer is refused even when a session cookie is also sent;
* the session cookie the login form sets after the same token was typed: signed and
  timestamped (itsdangerous), HttpOnly, SameSite=Strict; it names the token it was made
  with (its id, a hash prefix), so a rotated token ends every session.

State changes are POSTs carrying a CSRF token bound to the principal (HMAC of the session
id, or of the bearer/header identity, under the server's secret), checked in constant
time, and their ``Origin`` (else ``Referer``), when sent, must be this host.

How it fails: any doubt is a refusal (None), never a guess. Sessions are stateless, so a
logout clears the browser's cookie but a copy stolen before stays valid until it expires
(``CORTEX_DASHBOARD_SESSION_SECONDS``) or the token is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from cortex_school.settings import DashboardSettings

SESSION_COOKIE = "cortex_session"
PUBLIC: frozenset[tuple[str, str]] = frozenset({("GET", "/login"), ("POST", "/login"), ("GET", "/healthz")})
# A reviewer's name as typed at login, and an identity a proxy sends: bounded, printable.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9 ._@+-]{1,64}$")
IDENTITY_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True)
class Principal:
    """A person the dashboard has authenticated."""

    reviewer: str  # recorded on the timeline as human:<reviewer>
    key: str  # what the CSRF token is bound to
    via: Literal["session", "bearer", "header"]


class DashboardAuth:
    """The dashboard's authentication and CSRF rules for one set of settings."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._token = settings.token.encode() if settings.token else None
        self.token_id = hashlib.sha256(self._token).hexdigest()[:8] if self._token else None
        # Derived from the token, so sessions survive a restart and die with the token;
        # header-only mode has no shared secret to derive from: a fresh one per process.
        self._secret = (hmac.new(self._token, b"cortex-school dashboard v1", hashlib.sha256).digest()
                        if self._token else secrets.token_bytes(32))
        self._sessions = URLSafeTimedSerializer(self._secret, salt="cortex-school-dashboard-session")

    # -- who ---------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal | None:
        header = self.settings.trusted_header
        if header is not None and header in request.headers:
            identity = request.headers[header].strip()
            if not IDENTITY_PATTERN.match(identity):
                return None
            return Principal(reviewer=identity, key=f"header:{identity}", via="header")
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, presented = authorization.partition(" ")
            if scheme.lower() != "bearer" or not self.token_matches(presented.strip()):
                return None
            return Principal(reviewer=f"dashboard:{self.token_id}", key=f"bearer:{self.token_id}", via="bearer")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return self._session(cookie)
        return None

    def token_matches(self, presented: str) -> bool:
        if self._token is None or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    def _session(self, cookie: str) -> Principal | None:
        try:
            data = self._sessions.loads(cookie, max_age=self.settings.session_seconds)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or data.get("tid") != self.token_id or self.token_id is None:
            return None
        sid, name = data.get("sid"), data.get("name") or ""
        if not isinstance(sid, str) or not isinstance(name, str) or (name and not NAME_PATTERN.match(name)):
            return None
        who = f"dashboard:{self.token_id}"
        return Principal(reviewer=f"{name} ({who})" if name else who, key=f"session:{sid}", via="session")

    def new_session(self, name: str) -> str:
        """The signed cookie value for a login that presented the right token."""
        return self._sessions.dumps({"sid": secrets.token_hex(16), "name": name, "tid": self.token_id})

    # -- CSRF ----------------------------------------------------------------------------
    def csrf_token(self, principal: Principal) -> str:
        return hmac.new(self._secret, f"csrf:{principal.key}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, principal: Principal, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf_token(principal).encode())


def same_origin(request: Request) -> bool:
    """A POST's ``Origin`` (else ``Referer``) names this host, or neither was sent (a script;
    its CSRF token is still checked). A browser sending ``Origin: null`` is refused."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc == host
    referer = request.headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc == host
    return True
