"""A simulated OpenAI-compatible provider on 127.0.0.1: the demo's judge and the tests' witness.

``SimulatedProvider`` serves ``POST /v1/chat/completions`` (and ``GET /v1/models``) from a
background thread, records every request it receives (never an API key) and answers according
to a behaviour, overridden per target by scripts::

    with SimulatedProvider() as provider:
        provider.script(target, [Reply.server_error(), Reply.ok(passed=True)])
        ...  # point the openai SDK at provider.base_url
        assert provider.count(target) == 2

A request's target is the ``X-Evalq-Target`` header the LLM judge sends
(``<evaluation uuid>/<target uuid>``). ``Reply.ok()`` answers with a valid verdict shaped for the
request: a tool call when tools are offered, JSON content otherwise. The server recognises a
``rating`` request by a ``rating`` property in the offered tool's parameters (its scale from
``minimum``/``maximum``), or, without tools, by ``"rating"`` in the system prompt (its scale from
"integer from A to B"); anything else is ``binary``. Unless a reply fixes it, the verdict is
decided by a stable hash of the target: about 80% pass.

The demo behaviour (``behaviour="demo"``, ``demo_behaviour``) is deterministic per target, the
same on every run (SHA-256 of the target, no randomness):

- model ``legacy-judge`` with tools offered: every request gets 400 "tools is not supported in
  this model" (a ``model_capability`` error: dead-lettered at once);
- about 8% of targets: 429 with ``Retry-After: 1`` on their first request, then ok;
- about 5%: 500 on their first two requests, then ok;
- about 5%: slow, every request answers after 0.5-1.5 s;
- the remaining ~82%: ok at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

TARGET_HEADER = "X-Evalq-Target"
CHAT_PATH = "/v1/chat/completions"
MODELS = ("sim-judge", "legacy-judge")
DEFAULT_SCALE = (1, 5)


@dataclass(frozen=True)
class Reply:
    """How the provider answers one request. Build one with the constructors below."""

    kind: Literal["ok", "content", "tool_call", "error"]
    status: int = 200
    text: str | None = None
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    passed: bool | None = None
    rating: int | None = None
    reason: str | None = None

    @classmethod
    def ok(
        cls, *, passed: bool | None = None, rating: int | None = None, reason: str | None = None
    ) -> Reply:
        """A valid verdict for the request; unset fields are decided by the target's hash."""
        return cls("ok", passed=passed, rating=rating, reason=reason)

    @classmethod
    def content(cls, text: str) -> Reply:
        """200 with this raw message content (and no tool call), e.g. invalid JSON."""
        return cls("content", text=text)

    @classmethod
    def tool_call(cls, arguments: str) -> Reply:
        """200 with a call of the offered tool whose arguments are this raw text."""
        return cls("tool_call", text=arguments)

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
        default_type = "invalid_request_error" if status < 500 else "server_error"
        return cls(
            "error",
            status=status,
            message=message,
            type=type or default_type,
            code=code,
            param=param,
            headers=dict(headers or {}),
        )

    @classmethod
    def hang(cls, seconds: float = 60.0) -> Reply:
        """Answer ok only after ``seconds`` (for client timeouts); ``stop()`` cuts it short."""
        return cls.ok().delayed(seconds)

    @classmethod
    def slow(cls, seconds: float) -> Reply:
        """Answer ok after ``seconds``."""
        return cls.ok().delayed(seconds)

    @classmethod
    def tools_not_supported(cls) -> Reply:
        return cls.error(400, "tools is not supported in this model", param="tools")

    @classmethod
    def rate_limited(cls, retry_after_s: float = 1) -> Reply:
        """429 ``rate_limit_exceeded`` with ``Retry-After`` (seconds) and ``retry-after-ms``."""
        return cls.error(
            429,
            "Rate limit reached for requests. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
            headers=_retry_after_headers(retry_after_s),
        )

    @classmethod
    def insufficient_quota(cls) -> Reply:
        return cls.error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        )

    @classmethod
    def unauthorized(cls) -> Reply:
        return cls.error(401, "Incorrect API key provided.", code="invalid_api_key")

    @classmethod
    def server_error(cls) -> Reply:
        return cls.error(500, "The server had an error while processing your request.")

    @classmethod
    def overloaded(cls, status: int = 529, retry_after_s: float | None = None) -> Reply:
        """529 (or 503) "overloaded", with ``Retry-After`` when ``retry_after_s`` is given."""
        headers = _retry_after_headers(retry_after_s) if retry_after_s is not None else {}
        return cls.error(
            status,
            "The server is overloaded. Please try again later.",
            type="overloaded_error",
            headers=headers,
        )

    def delayed(self, seconds: float) -> Reply:
        """This reply, sent only after ``seconds``."""
        return replace(self, delay_s=seconds)


@dataclass(frozen=True)
class ChatRequest:
    """What a behaviour sees of one chat-completions request."""

    target: str | None
    model: str | None
    tools_offered: bool
    n: int  # how many requests for this target came before this one
    metric: Literal["binary", "rating"] = "binary"
    scale: tuple[int, int] = DEFAULT_SCALE
    tool_name: str | None = None


Behaviour = Callable[[ChatRequest], Reply]


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


def ok_behaviour(request: ChatRequest) -> Reply:
    """Every request gets a valid verdict at once."""
    return Reply.ok()


DemoFault = Literal["rate_limited_once", "server_error_twice", "slow", "ok"]


def demo_fault(target: str) -> DemoFault:
    """What the demo behaviour does to ``target`` (unless its model refuses tools)."""
    fault = _unit("fault", target)
    if fault < 0.08:
        return "rate_limited_once"
    if fault < 0.13:
        return "server_error_twice"
    if fault < 0.18:
        return "slow"
    return "ok"


def demo_behaviour(request: ChatRequest) -> Reply:
    """The demo's deterministic mix of provider failures (see the module docstring)."""
    if request.model == "legacy-judge" and request.tools_offered:
        return Reply.tools_not_supported()
    if request.target is None:
        return Reply.ok()
    fault = demo_fault(request.target)
    if fault == "rate_limited_once" and request.n == 0:
        return Reply.rate_limited(retry_after_s=1)
    if fault == "server_error_twice" and request.n < 2:
        return Reply.server_error()
    if fault == "slow":
        return Reply.slow(0.5 + _unit("delay", request.target))
    return Reply.ok()


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

    def _begin(self, record: Record, chat: bool) -> tuple[int, int]:
        with self._lock:
            self._records[record.id] = record
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            n = self._seen[record.target] if chat else 0
            if chat:
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
        chat = self.command == "POST" and path == CHAT_PATH
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
            return 404, "not_found", _error_body(f"Unknown request URL: {self.command} {path}"), {}
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return (
                400,
                "bad_request",
                _error_body("The body must be a JSON object with messages."),
                {},
            )
        request = _chat_request(body, target, n)
        reply = provider._decide(request)
        if provider._wait(reply.delay_s):
            return None
        return reply.status, reply.kind, _render(reply, request, body), reply.headers

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


# --- reading requests ------------------------------------------------------------------------


def _chat_request(body: dict[str, Any], target: str | None, n: int) -> ChatRequest:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    tool = _chosen_tool(tools, body.get("tool_choice"))
    function = _mapping(tool.get("function")) if tool else {}
    system = _system_text(body.get("messages") or [])

    rating = _mapping(_mapping(function.get("parameters")).get("properties")).get("rating")
    if isinstance(rating, dict):
        low, high = rating.get("minimum"), rating.get("maximum")
        if isinstance(low, int) and isinstance(high, int) and low < high:
            scale = (low, high)
        else:
            scale = _scale_from_text(system)
        metric: Literal["binary", "rating"] = "rating"
    elif not tools and '"rating"' in system:
        metric, scale = "rating", _scale_from_text(system)
    else:
        metric, scale = "binary", DEFAULT_SCALE
    return ChatRequest(
        target=target,
        model=body.get("model") if isinstance(body.get("model"), str) else None,
        tools_offered=bool(tools),
        n=n,
        metric=metric,
        scale=scale,
        tool_name=function.get("name") if tools else None,
    )


def _chosen_tool(tools: list[dict[str, Any]], choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        name = _mapping(choice.get("function")).get("name")
        for tool in tools:
            if _mapping(tool.get("function")).get("name") == name:
                return tool
    return tools[0] if tools else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _system_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _scale_from_text(text: str) -> tuple[int, int]:
    match = re.search(r"integer (?:from|between) (-?\d+) (?:to|and) (-?\d+)", text)
    if match and int(match[1]) < int(match[2]):
        return int(match[1]), int(match[2])
    return DEFAULT_SCALE


# --- writing replies -------------------------------------------------------------------------


def _render(reply: Reply, request: ChatRequest, body: dict[str, Any]) -> dict[str, Any]:
    if reply.kind == "error":
        return _error_body(reply.message or "", reply.type, reply.code, reply.param)
    if reply.kind == "content" or (reply.kind == "ok" and not request.tools_offered):
        text = reply.text if reply.kind == "content" else json.dumps(_verdict(reply, request))
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        finish = "stop"
    else:
        arguments = reply.text if reply.kind == "tool_call" else None
        arguments = arguments or json.dumps(_verdict(reply, request))
        call = {
            "id": f"call_sim_{hashlib.sha256(arguments.encode()).hexdigest()[:12]}",
            "type": "function",
            "function": {"name": request.tool_name or "submit_verdict", "arguments": arguments},
        }
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
        finish = "tool_calls"
    prompt_tokens = len(json.dumps(body.get("messages"))) // 4 + 1
    completion_tokens = len(json.dumps(message)) // 4 + 1
    return {
        "id": f"chatcmpl-sim-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or "sim-judge",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _verdict(reply: Reply, request: ChatRequest) -> dict[str, Any]:
    key = request.target or ""
    passed = reply.passed if reply.passed is not None else _unit("verdict", key) < 0.8
    if request.metric == "rating":
        low, high = request.scale
        if reply.rating is not None:
            rating = reply.rating
        else:
            threshold = low + math.ceil((high - low) / 2)
            options = range(threshold, high + 1) if passed else range(low, threshold)
            rating = options[int(_unit("rating", key) * len(options))]
        reason = reply.reason or f"Rated {rating} on a scale of {low} to {high}."
        return {"rating": rating, "reason": reason}
    verdict = "meets" if passed else "does not meet"
    return {"passed": passed, "reason": reply.reason or f"The output {verdict} the criteria."}


def _error_body(
    message: str,
    type: str | None = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _models_list() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "evalq-sim"} for m in MODELS]
    return {"object": "list", "data": data}


def _retry_after_headers(seconds: float) -> dict[str, str]:
    return {
        "Retry-After": str(max(0, math.ceil(seconds))),
        "retry-after-ms": str(max(0, round(seconds * 1000))),
    }


def _unit(salt: str, key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same on every run and every machine."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
