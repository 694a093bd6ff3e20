"""Serve the dashboard with uvicorn: in the foreground (``evalq dashboard``) or on a thread
beside worker pools (``evalq up``, ``evalq demo``)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

import redis
import uvicorn

from config.policy import Policy
from config.settings import Settings
from dashboard.app import create_app
from dashboard.auth import Tokens, check_bind
from dashboard.services import Services

logger = logging.getLogger("evalq.dashboard")


@dataclass
class DashboardServer:
    """The dashboard on one listening socket.

    Parameters:
      settings: Where to bind (``dashboard_host``/``dashboard_port``) and the tokens.
      client: The Redis the workers use.
      policy: The error policy (for "attempt n of max").
      host, port: Override the settings' address (port 0: any free port).
      fallback_port: When the port is taken, listen on any free port instead of failing (what
        ``evalq up`` and ``evalq demo`` want: the dashboard is not their main job).

    Raises (on construction):
      BindRefused: a non-loopback host without EVALQ_DASHBOARD_TOKEN.
      OSError: the port is taken and ``fallback_port`` is False.
    """

    settings: Settings
    client: redis.Redis
    policy: Policy
    host: str | None = None
    port: int | None = None
    fallback_port: bool = False
    tokens: Tokens = field(init=False)
    socket: socket.socket = field(init=False)
    _server: uvicorn.Server | None = field(init=False, default=None)
    _thread: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.host = self.host or self.settings.dashboard_host
        self.tokens = Tokens.from_settings(self.settings)
        check_bind(self.host, self.tokens)
        wanted = self.settings.dashboard_port if self.port is None else self.port
        self.socket = _listen(self.host, wanted, fallback=self.fallback_port)
        self.port = self.socket.getsockname()[1]

    @property
    def url(self) -> str:
        """The dashboard's address."""
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """What to open: with a token made up for this run, the link that logs in with it (the
        person who started the dashboard is the one who sees it); else the address."""
        if self.tokens.generated:
            return f"{self.url}login?token={self.tokens.operator}"
        return self.url

    def _build(self) -> uvicorn.Server:
        _log_actions()
        app = create_app(
            self.settings,
            Services.from_settings(self.settings, self.client, self.policy),
            tokens=self.tokens,
        )
        # No access log: the printed login link carries a token in its query string. Actions
        # are logged by the app itself, with who did them.
        config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=True,
                                lifespan="off")  # fmt: skip
        return uvicorn.Server(config)

    def serve(self) -> None:
        """Serve in the foreground until interrupted."""
        self._server = self._build()
        self._server.run(sockets=[self.socket])

    def start(self) -> DashboardServer:
        """Serve on a daemon thread; returns once the server accepts connections."""
        self._server = self._build()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, name="evalq-dashboard",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the dashboard stopped while starting")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop a server started with ``start``."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.socket.close()


def _log_actions() -> None:
    """Send the dashboard's log (logins, actions with who did them, refusals) to stderr, unless
    the process configured logging itself (then its handlers get it)."""
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _listen(host: str, port: int, *, fallback: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        if not (fallback and error.errno == errno.EADDRINUSE):
            sock.close()
            raise
        logger.warning("dashboard port %d is taken; using a free one", port)
        sock.bind((host, 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
