"""Who may see and do what: token login, bearer tokens, roles, read-only mode and CSRF.

Every request is authenticated here, in one middleware, except the two paths a person needs
before they can log in (``PUBLIC_PATHS``). A request that changes state (any method but GET and
HEAD) also needs the operator role, a dashboard that is not read-only, and — when it rides on the
session cookie — the session's CSRF token. Putting this in the middleware rather than in each
endpoint means a new route cannot forget it; ``tests/unit/dashboard`` walks the route table to
prove it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from config.settings import Settings

logger = logging.getLogger("evalq.dashboard")

Role = Literal["operator", "viewer"]

#: Served without authentication: the health probe and the login form itself.
PUBLIC_PATHS = frozenset({"/healthz", "/login"})
#: State-changing paths any logged-in person may use, whatever their role or read-only mode.
ROLE_FREE_ACTIONS = frozenset({"/logout"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SESSION_COOKIE = "evalq_session"
#: How long a login lasts, in seconds.
SESSION_MAX_AGE_S = 12 * 3600


class BindRefused(Exception):
    """The dashboard was asked to listen beyond loopback without a configured token."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: their role, the name the action log records, and how they proved it."""

    role: Role
    name: str
    via: Literal["session", "bearer"]

    @property
    def who(self) -> str:
        """The action log's ``who``: the name given at login and the role (never the token)."""
        return f"{self.name} ({self.role})"


@dataclass(frozen=True)
class Tokens:
    """The dashboard's tokens. ``generated`` is True when the operator token was made up for this
    run because none is configured (then the dashboard only listens on 127.0.0.1)."""

    operator: str
    viewer: str | None = None
    metrics: str | None = None
    read_only: bool = False
    generated: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        """The configured tokens; without ``EVALQ_DASHBOARD_TOKEN``, a random one for this run."""
        configured = settings.dashboard_token.get_secret_value() if settings.dashboard_token else ""
        viewer = settings.dashboard_viewer_token
        metrics = settings.metrics_token
        return cls(
            operator=configured or secrets.token_urlsafe(24),
            viewer=viewer.get_secret_value() or None if viewer else None,
            metrics=metrics.get_secret_value() or None if metrics else None,
            read_only=settings.dashboard_read_only,
            generated=not configured,
        )

    def role_of(self, presented: str) -> Role | None:
        """The role a presented token grants, compared in constant time; None if it grants none."""
        given = presented.encode()
        # Both comparisons always run, so timing says nothing about which token came close.
        is_operator = hmac.compare_digest(given, self.operator.encode())
        is_viewer = self.viewer is not None and hmac.compare_digest(given, self.viewer.encode())
        if is_operator:
            return "operator"
        return "viewer" if is_viewer else None

    def opens_metrics(self, presented: str) -> bool:
        """Whether ``presented`` is the metrics token (the dashboard tokens open /metrics too)."""
        if self.metrics is not None and hmac.compare_digest(
            presented.encode(), self.metrics.encode()
        ):
            return True
        return self.role_of(presented) is not None

    def fingerprint(self, role: Role) -> str:
        """A keyed digest of ``role``'s current token, kept in the session: a session outlives
        neither the token it was opened with nor the removal of its role's token."""
        token = self.operator if role == "operator" else self.viewer
        if token is None:
            return ""
        key = self.session_secret().encode()
        return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]

    def session_secret(self) -> str:
        """The key sessions are signed with: derived from the operator token, so rotating the
        token logs everyone out and replicas with the same token accept each other's sessions."""
        return hmac.new(
            self.operator.encode(), b"evalq-dashboard-session", hashlib.sha256
        ).hexdigest()


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse to listen anywhere but loopback with a made-up token.

    Raises:
      BindRefused: ``host`` is not a loopback address and no EVALQ_DASHBOARD_TOKEN is set.
    """
    if not tokens.generated:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise BindRefused(
            f"refusing to serve the dashboard on {host} without EVALQ_DASHBOARD_TOKEN: set a "
            "token, or bind 127.0.0.1 (EVALQ_DASHBOARD_HOST)"
        )


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (empty for bearer requests)."""
    if "session" not in request.scope:
        return ""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


def principal_of(request: Request) -> Principal:
    """The authenticated principal of a request that passed ``Authentication``."""
    principal: Principal = request.state.principal
    return principal


def log_action(request: Request, action: str, **details: object) -> None:
    """Log an action with who did it (name and role; never a token)."""
    principal = principal_of(request)
    shown = " ".join(f"{key}={value!r}" for key, value in details.items())
    client = request.client.host if request.client else "?"
    logger.info("dashboard action %s by %s from %s %s", action, principal.who, client, shown)


class Authentication(BaseHTTPMiddleware):
    """Authenticates every request but ``PUBLIC_PATHS`` and refuses actions it may not take.

    Parameters:
      tokens(Tokens): The dashboard's tokens and read-only switch.
    """

    def __init__(self, app: ASGIApp, *, tokens: Tokens) -> None:
        super().__init__(app)
        self.tokens = tokens

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if path in PUBLIC_PATHS:
            return await call_next(request)
        principal = self._authenticate(request)
        if principal is None:
            return _unauthenticated(request)
        request.state.principal = principal
        if request.method not in SAFE_METHODS:
            refusal = await self._refusal(request, principal)
            if refusal is not None:
                logger.warning("dashboard refused %s %s to %s: %s", request.method, path,
                               principal.who, refusal)  # fmt: skip
                return _refused(request, refusal)
        return await call_next(request)

    def _authenticate(self, request: Request) -> Principal | None:
        bearer = _bearer(request)
        if bearer is not None:
            if request.url.path == "/metrics" and self.tokens.opens_metrics(bearer):
                return Principal("viewer", "metrics", "bearer")
            role = self.tokens.role_of(bearer)
            return None if role is None else Principal(role, "api", "bearer")
        role = request.session.get("role")
        if role not in ("operator", "viewer"):
            return None
        expected = self.tokens.fingerprint(role)
        if not expected or not hmac.compare_digest(
            str(request.session.get("token", "")).encode(), expected.encode()
        ):
            return None
        return Principal(role, str(request.session.get("name") or "anonymous"), "session")

    async def _refusal(self, request: Request, principal: Principal) -> str | None:
        # A bearer token is not sent by a browser on its own, so it cannot be forged across
        # sites; a session cookie is, hence the CSRF token.
        if principal.via == "session" and not await _csrf_ok(request):
            return "missing or wrong CSRF token: reload the page and try again"
        if request.url.path in ROLE_FREE_ACTIONS:
            return None
        if self.tokens.read_only:
            return "the dashboard is read-only (EVALQ_DASHBOARD_READ_ONLY)"
        if principal.role != "operator":
            return "viewers cannot act: log in with the operator token"
        return None


async def _csrf_ok(request: Request) -> bool:
    expected = request.session.get("csrf")
    if not expected:
        return False
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        # The raw body, not request.form(): the body is replayed to the endpoint, a parsed form
        # is not.
        values = parse_qs((await request.body()).decode("latin-1")).get(CSRF_FIELD)
        given = values[0] if values else None
    return given is not None and hmac.compare_digest(given.encode(), str(expected).encode())


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/metrics" or "HX-Request" in request.headers


def _unauthenticated(request: Request) -> Response:
    if _wants_json(request):
        response = JSONResponse({"error": "authentication required"}, status_code=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="evalq"'
        if "HX-Request" in request.headers:
            response.headers["HX-Redirect"] = "/login"
        return response
    return RedirectResponse("/login", status_code=303)


def _refused(request: Request, reason: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": reason}, status_code=403)
    return Response(reason, status_code=403, media_type="text/plain")


class SecurityHeaders:
    """Adds a strict Content-Security-Policy (no inline scripts or styles) and friends."""

    POLICY = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", self.POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Sessions:
    """Signed session cookies (itsdangerous, via Starlette's ``SessionMiddleware``): HttpOnly,
    SameSite=Strict, and Secure whenever the request came over https."""

    def __init__(self, app: ASGIApp, *, secret: str) -> None:
        from starlette.middleware.sessions import SessionMiddleware

        options = {"session_cookie": SESSION_COOKIE, "max_age": SESSION_MAX_AGE_S,
                   "same_site": "strict"}  # fmt: skip
        self.plain = SessionMiddleware(app, secret, https_only=False, **options)  # type: ignore[arg-type]
        self.secure = SessionMiddleware(app, secret, https_only=True, **options)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.secure if scope.get("scheme") in ("https", "wss") else self.plain
        await chosen(scope, receive, send)
