"""A simulated OpenAI-compatible provider on 127.0.0.1: the demo's judge and the tests' witness.

``SimulatedProvider`` serves ``POST /v1/chat/completions``, ``POST /v1/embeddings`` (and
``GET /v1/models``) from a
background thread, records every request it receives (never an API key) and answers according
to a behaviour, overridden per target by scripts::

    with SimulatedProvider() as provider:
        provider.script(target, [Reply.server_error(), Reply.ok(passed=True)])
        ...  # point the openai SDK at provider.base_url
        assert provider.count(target) == 2

A request's target is the ``X-Evalq-Target`` header the LLM judge sends
(``<evaluation uuid>/<target uuid>``). What a reply looks like on the wire, how a request's
metric and scale are recognised, and the demo behaviour (``behaviour="demo"``) are described in
``workers.demo.replies``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from workers.demo.replies import (
    DEFAULT_SCALE,
    Behaviour,
    ChatRequest,
    DemoFault,
    Reply,
    chat_request,
    demo_behaviour,
    demo_fault,
    embeddings_body,
    embeddings_inputs,
    embeddings_request,
    error_body,
    ok_behaviour,
    response_body,
)

__all__ = [
    "CHAT_PATH",
    "DEFAULT_SCALE",
    "EMBEDDINGS_PATH",
    "MODELS",
    "TARGET_HEADER",
    "Behaviour",
    "ChatRequest",
    "DemoFault",
    "Record",
    "Reply",
    "SimulatedProvider",
    "demo_behaviour",
    "demo_fault",
    "ok_behaviour",
]

TARGET_HEADER = "X-Evalq-Target"
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS = ("sim-judge", "legacy-judge", "sim-embed")


@dataclass(frozen=True)
class Record:
    """One request as the provider saw it. Holds whether it was authorised, never the key."""

    id: int
    method: str
    path: str
    target: str | None
    model: str | None
    tools_offered: bool
    authorized: bool
    started_at: float  # time.monotonic()
    ended_at: float | None = None
    status: int | None = None  # None while in flight, or when stop() cut it short
    reply: str | None = None


_BEHAVIOURS: dict[str, Behaviour] = {"ok": ok_behaviour, "demo": demo_behaviour}


class SimulatedProvider:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, run in a background thread.

    Parameters:
      behaviour: ``"ok"`` (default), ``"demo"``, or a function from ChatRequest to Reply.
        Scripts set with ``script()`` take precedence for their target.
      port: TCP port; 0 (default) picks a free one.
    """

    def __init__(self, behaviour: Literal["ok", "demo"] | Behaviour = "ok", *, port: int = 0):
        self.behaviour: Behaviour = (
            _BEHAVIOURS[behaviour] if isinstance(behaviour, str) else behaviour
        )
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._records: dict[int, Record] = {}
        self._seen: Counter[str | None] = Counter()
        self._scripts: dict[str, list[Reply]] = {}
        self._in_flight = 0
        self._max_in_flight = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimulatedProvider:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the simulated provider is already running")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="simulated-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests still waiting out a delay are dropped without an answer."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> SimulatedProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for the openai SDK's ``base_url``."""
        if self._server is None:
            raise RuntimeError("the simulated provider is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # --- scripting and inspection -------------------------------------------------------------

    def script(self, target: str, replies: list[Reply]) -> None:
        """The n-th request for ``target`` gets ``replies[n]``; the last one repeats after that."""
        if not replies:
            raise ValueError("a script needs at least one reply")
        with self._lock:
            self._scripts[target] = list(replies)

    def requests_for(self, target: str | None = None) -> list[Record]:
        """Recorded requests in arrival order: those for ``target``, or all when None."""
        with self._lock:
            records = list(self._records.values())
        return [r for r in records if target is None or r.target == target]

    def count(self, target: str | None = None) -> int:
        """How many requests arrived for ``target`` (all requests when None)."""
        return len(self.requests_for(target))

    @property
    def max_in_flight(self) -> int:
        """The peak number of requests being answered at the same time."""
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Forget recorded requests, the in-flight peak and all scripts."""
        with self._lock:
            self._records.clear()
            self._seen.clear()
            self._scripts.clear()
            self._max_in_flight = self._in_flight

    # --- used by the handler ------------------------------------------------------------------

    def _begin(self, record: Record, counted: bool) -> tuple[int, int]:
        """Record a request; ``counted`` ones (chat and embeddings) advance their target's
        script, whichever endpoint they call."""
        with self._lock:
            self._records[record.id] = record
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            n = self._seen[record.target] if counted else 0
            if counted:
                self._seen[record.target] += 1
            return record.id, n

    def _end(self, record_id: int, status: int | None, reply: str | None) -> None:
        with self._lock:
            self._in_flight -= 1
            record = self._records.get(record_id)
            if record is not None:  # reset() may have dropped it meanwhile
                self._records[record_id] = replace(
                    record, ended_at=time.monotonic(), status=status, reply=reply
                )

    def _decide(self, request: ChatRequest) -> Reply:
        with self._lock:
            replies = self._scripts.get(request.target) if request.target is not None else None
        if replies:
            return replies[min(request.n, len(replies) - 1)]
        return self.behaviour(request)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stop() comes first; True when it did."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        provider: SimulatedProvider,
    ) -> None:
        self.provider: SimulatedProvider = provider
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a client may take to send its request
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recorded requests are the log

    def _serve(self) -> None:
        provider = self.server.provider
        path = self.path.split("?", 1)[0].rstrip("/")
        chat = self.command == "POST" and path in (CHAT_PATH, EMBEDDINGS_PATH)
        body = self._read_json() if chat else None
        record = Record(
            id=next(provider._ids),
            method=self.command,
            path=path,
            target=self.headers.get(TARGET_HEADER),
            model=body.get("model") if isinstance(body, dict) else None,
            tools_offered=isinstance(body, dict) and bool(body.get("tools")),
            authorized=bool(self.headers.get("Authorization")),
            started_at=time.monotonic(),
        )
        record_id, n = provider._begin(record, chat)
        answer: tuple[int, str, dict[str, Any], Mapping[str, str]] | None = None
        try:
            answer = self._answer(provider, path, chat, body, record.target, n)
        finally:
            # Recorded before the answer is written, so a client that has its answer also
            # finds the request finished in the records.
            provider._end(record_id, answer[0] if answer else None, answer[1] if answer else None)
        if answer is None:  # stop() cut a delay short: drop the connection unanswered
            self.close_connection = True
            return
        status, _, payload, headers = answer
        # A client that gave up waiting (its timeout) has closed the connection: nothing to tell.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, payload, headers)

    def _answer(
        self,
        provider: SimulatedProvider,
        path: str,
        chat: bool,
        body: Any,
        target: str | None,
        n: int,
    ) -> tuple[int, str, dict[str, Any], Mapping[str, str]] | None:
        """(status, reply kind, body, headers) for this request; None when stopped meanwhile."""
        if self.command == "GET" and path == "/v1/models":
            return 200, "models", _models_list(), {}
        if not chat:
            return 404, "not_found", error_body(f"Unknown request URL: {self.command} {path}"), {}
        if path == EMBEDDINGS_PATH:
            return self._answer_embeddings(provider, body, target, n)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return (
                400,
                "bad_request",
                error_body("The body must be a JSON object with messages."),
                {},
            )
        request = chat_request(body, target, n)
        reply = provider._decide(request)
        if provider._wait(reply.delay_s):
            return None
        return reply.status, reply.kind, response_body(reply, request, body), reply.headers

    def _answer_embeddings(
        self, provider: SimulatedProvider, body: Any, target: str | None, n: int
    ) -> tuple[int, str, dict[str, Any], Mapping[str, str]] | None:
        texts = embeddings_inputs(body)
        if texts is None:
            message = "'input' must be a non-empty string or a non-empty array of strings."
            return 400, "bad_request", error_body(message, param="input"), {}
        reply = provider._decide(embeddings_request(body, target, n))
        if provider._wait(reply.delay_s):
            return None
        if reply.kind == "error":
            answer = error_body(reply.message or "", reply.type, reply.code, reply.param)
            return reply.status, reply.kind, answer, reply.headers
        return 200, "embeddings", embeddings_body(body, texts), reply.headers

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _send(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


def _models_list() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "evalq-sim"} for m in MODELS]
    return {"object": "list", "data": data}
