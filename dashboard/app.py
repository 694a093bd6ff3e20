"""The dashboard's app factory: ``create_app(settings, services)``; nothing is read from globals."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from config.settings import Settings
from dashboard import api, pages
from dashboard.auth import Authentication, SecurityHeaders, Sessions, Tokens
from dashboard.metrics import render_metrics
from dashboard.services import Services

logger = logging.getLogger("evalq.dashboard")

HERE = Path(__file__).resolve().parent


def _when(ms: Any) -> str:
    if not ms:  # None, "", 0, or a field the record does not have
        return ""
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(ms: Any) -> str:
    seconds = int(ms or 0) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def templates() -> Jinja2Templates:
    """The page templates. Autoescaping is on for every template, whatever its name: error
    messages from providers and jobs can carry HTML."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
    )
    environment.filters["when"] = _when
    environment.filters["duration"] = _duration
    return Jinja2Templates(env=environment)


def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def login(request: Request) -> Response:
    """GET: the form (or, with ``?token=``, the link ``evalq dashboard`` prints). POST: the form.
    A good token starts a session; the name given is what the action log records."""
    tokens: Tokens = request.app.state.tokens
    login_page: Jinja2Templates = request.app.state.templates
    if request.method == "GET" and "token" not in request.query_params:
        return login_page.TemplateResponse(request, "login.html", {"error": None})
    if request.method == "POST":
        form = await request.form()
        token, name = str(form.get("token") or ""), str(form.get("name") or "")
    else:
        token, name = request.query_params["token"], ""
    role = tokens.role_of(token.strip())
    if role is None:
        logger.warning("dashboard login refused from %s",
                       request.client.host if request.client else "?")  # fmt: skip
        return login_page.TemplateResponse(
            request, "login.html", {"error": "That token is not valid."}, status_code=401
        )
    request.session.clear()
    # The name goes into log lines: printable characters only.
    shown = "".join(ch for ch in name.strip() if ch.isprintable())[:64] or role
    request.session.update({"role": role, "name": shown, "token": tokens.fingerprint(role)})
    logger.info("dashboard login: %s (%s)", request.session["name"], role)
    return RedirectResponse("/", status_code=303)


def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def metrics(request: Request) -> Response:
    body = render_metrics(request.app.state.services)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def create_app(
    settings: Settings, services: Services, *, tokens: Tokens | None = None
) -> Starlette:
    """The dashboard app on ``services``, with auth from ``settings`` (or ``tokens``, when the
    caller made the operator token, as ``evalq dashboard`` does without a configured one)."""
    tokens = tokens or Tokens.from_settings(settings)
    routes = [
        Route("/healthz", healthz),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *api.ROUTES,
        *pages.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(Sessions, secret=tokens.session_secret()),
            Middleware(Authentication, tokens=tokens),
        ],
    )
    app.state.services = services
    app.state.tokens = tokens
    app.state.templates = templates()
    return app
