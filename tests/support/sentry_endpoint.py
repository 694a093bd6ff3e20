"""A Sentry ingest endpoint on 127.0.0.1 for tests: it decodes what the SDK sends and keeps it.

It accepts ``POST /api/<project>/envelope/`` (newline-delimited envelopes, item payloads read by
their ``length`` when given) and the legacy ``POST /api/<project>/store/`` (one JSON event), either
one gzip- or deflate-encoded. It can be told to be down (refuse connections, or accept and close
them without an answer) or slow (wait before answering). It runs in the pytest process; worker
processes started by a test post to it through ``endpoint.dsn``::

    with SentryEndpoint() as endpoint:
        env = {"SENTRY_DSN": endpoint.dsn}
        ...
        events = endpoint.wait_for(1, timeout=10)
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

DownMode = Literal["refuse", "close"]

_PATH = re.compile(r"^/api/(?P<project>\d+)/(?P<kind>envelope|store)/?(?:\?.*)?$")


@dataclass
class Item:
    """One envelope item: its header and its raw payload."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Envelope:
    """One request as received: the envelope header, its items and the decoded request body."""

    project: str
    headers: dict[str, Any]
    items: list[Item] = field(default_factory=list)
    body: bytes = b""
    auth: str = ""


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[Item]]:
    """The header and items of a newline-delimited Sentry envelope."""
    stream = io.BytesIO(body)
    first = stream.readline()
    headers = json.loads(first) if first.strip() else {}
    items: list[Item] = []
    while True:
        line = stream.readline()
        if not line:
            break
        if not line.strip():
            continue
        item_headers = json.loads(line)
        length = item_headers.get("length")
        if length is not None:
            payload = stream.read(int(length))
            if stream.read(1) not in (b"\n", b""):
                stream.seek(-1, io.SEEK_CUR)
        else:
            payload = stream.readline().rstrip(b"\n")
        items.append(Item(item_headers, payload))
    return headers, items


def decode_body(body: bytes, encoding: str) -> bytes:
    """``body`` with its ``Content-Encoding`` (gzip, deflate or none) undone."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class SentryEndpoint:
    """A threaded HTTP server that records what Sentry SDKs send to it.

    Parameters:
      public_key(str): The key in the DSN it hands out. Default ``"public"``.
      project(int): The project id in the DSN. Default 1.
    """

    def __init__(self, *, public_key: str = "public", project: int = 1) -> None:
        self.public_key = public_key
        self.project = project
        self._condition = threading.Condition()
        self._envelopes: list[Envelope] = []
        self._errors: list[str] = []
        self._requests = 0
        self._delay_s = 0.0
        self._down: DownMode | None = None
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SentryEndpoint:
        self._stopping.clear()
        self._serve(self.port)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close_server()

    def __enter__(self) -> SentryEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def dsn(self) -> str:
        """``http://<public_key>@127.0.0.1:<port>/<project>``."""
        return f"http://{self.public_key}@127.0.0.1:{self.port}/{self.project}"

    # --- behaviour ---------------------------------------------------------------------------

    def down(self, mode: DownMode = "refuse") -> None:
        """Stop answering: ``refuse`` closes the listening socket (connection refused),
        ``close`` accepts connections and closes them without a response."""
        self._down = mode
        if mode == "refuse":
            self._close_server()

    def up(self) -> None:
        """Answer again, on the same port."""
        mode, self._down = self._down, None
        if mode == "refuse":
            self._serve(self.port)

    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before reading and answering each request (0: answer at once)."""
        self._delay_s = seconds

    # --- what was received -------------------------------------------------------------------

    def envelopes(self) -> list[Envelope]:
        with self._condition:
            return list(self._envelopes)

    def events(self) -> list[dict[str, Any]]:
        """Every error event received, in arrival order."""
        with self._condition:
            return [
                item.json()
                for envelope in self._envelopes
                for item in envelope.items
                if item.type == "event"
            ]

    def bodies(self) -> list[bytes]:
        """Every decoded request body received (envelope header and all items)."""
        with self._condition:
            return [envelope.body for envelope in self._envelopes]

    def errors(self) -> list[str]:
        """Requests the endpoint could not decode."""
        with self._condition:
            return list(self._errors)

    @property
    def requests(self) -> int:
        """Requests received, decoded or not (including those answered late or not at all)."""
        with self._condition:
            return self._requests

    def clear(self) -> None:
        with self._condition:
            self._envelopes.clear()
            self._errors.clear()
            self._requests = 0

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The events, once at least ``n`` arrived; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                events = self.events()
                if len(events) >= n:
                    return events
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} Sentry event(s) within {timeout}s, got {len(events)} "
                        f"({self._requests} request(s), decode errors: {self._errors})"
                    )
                self._condition.wait(left)

    # --- internals ---------------------------------------------------------------------------

    def _serve(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), _Handler)
        server.endpoint = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sentry-endpoint",
            daemon=True,
        )
        self._thread.start()

    def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _record(self, envelope: Envelope | None, error: str | None) -> None:
        with self._condition:
            if envelope is not None:
                self._envelopes.append(envelope)
            if error is not None:
                self._errors.append(error)
            self._condition.notify_all()

    def _count_request(self) -> None:
        with self._condition:
            self._requests += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    endpoint: SentryEndpoint


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        endpoint._count_request()
        if endpoint._down == "close":
            self._drop_connection()
            return
        if endpoint._delay_s > 0 and endpoint._stopping.wait(endpoint._delay_s):
            self._drop_connection()
            return
        match = _PATH.match(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if match is None:
            self._answer(404, {"detail": "not found"})
            return
        try:
            body = decode_body(raw, self.headers.get("Content-Encoding", ""))
            if match["kind"] == "store":
                event = json.loads(body)
                headers: dict[str, Any] = {"event_id": event.get("event_id")}
                items = [Item({"type": "event"}, json.dumps(event).encode())]
            else:
                headers, items = parse_envelope(body)
        except Exception as error:
            endpoint._record(None, f"{self.path}: {error!r}")
            self._answer(400, {"detail": "could not decode"})
            return
        auth = self.headers.get("X-Sentry-Auth", "")
        endpoint._record(Envelope(match["project"], headers, items, body, auth), None)
        self._answer(200, {"id": headers.get("event_id")})

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
