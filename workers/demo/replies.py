"""What the simulated provider answers: replies, behaviours, and their OpenAI wire format.

A behaviour maps a ``ChatRequest`` (what the server read from one chat-completions request) to a
``Reply``; ``response_body`` renders that reply as an OpenAI chat completion or error body.
``Reply.ok()`` answers with a valid verdict shaped for the request: a tool call when tools are
offered, JSON content otherwise. A request is recognised as ``rating`` by a ``rating`` property
in the offered tool's parameters (its scale from ``minimum``/``maximum``), or, without tools, by
``"rating"`` in the system prompt (its scale from "integer from A to B"); anything else is
``binary``. Unless a reply fixes it, the verdict is decided by a stable hash of the target: about
80% pass.

Embeddings requests (``endpoint="embeddings"``) go through the same scripts and behaviours; an
``ok`` reply answers every input with :func:`embedding`, a deterministic bag-of-words vector
(texts that share words point the same way), as floats or base64 as the request asks.

The demo behaviour (``demo_behaviour``) is deterministic per target, the same on every run
(SHA-256 of the target, no randomness):

- model ``legacy-judge`` with tools offered: every request gets 400 "tools is not supported in
  this model" (a ``model_capability`` error: dead-lettered at once);
- about 8% of targets: 429 with ``Retry-After: 1`` on their first request, then ok;
- about 5%: 500 on their first two requests, then ok;
- about 5%: slow, every request answers after 0.5-1.5 s;
- the remaining ~82%: ok at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

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
    def model_not_found(cls, model: str = "unknown-model") -> Reply:
        """404 ``model_not_found``, as OpenAI answers a model that does not exist."""
        return cls.error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

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
    metric: Literal["binary", "rating", "comparison", "schema"] = "binary"
    scale: tuple[int, int] = DEFAULT_SCALE
    tool_name: str | None = None
    endpoint: Literal["chat", "embeddings"] = "chat"
    schema: dict[str, Any] | None = None  # the verdict's JSON schema, for metric "schema"


Behaviour = Callable[[ChatRequest], Reply]


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


# --- reading requests ------------------------------------------------------------------------


def chat_request(body: dict[str, Any], target: str | None, n: int) -> ChatRequest:
    """What a behaviour sees of a chat-completions ``body``: model, tools, metric and scale."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    tool = _chosen_tool(tools, body.get("tool_choice"))
    function = _mapping(tool.get("function")) if tool else {}
    system = _system_text(body.get("messages") or [])

    parameters = _mapping(function.get("parameters"))
    rating = _mapping(parameters.get("properties")).get("rating")
    schema: dict[str, Any] | None = None
    metric: Literal["binary", "rating", "comparison", "schema"] = "binary"
    scale = DEFAULT_SCALE
    if isinstance(rating, dict):
        low, high = rating.get("minimum"), rating.get("maximum")
        if isinstance(low, int) and isinstance(high, int) and low < high:
            scale = (low, high)
        else:
            scale = _scale_from_text(system)
        metric = "rating"
    elif tools and set(_mapping(parameters.get("properties"))) != {"passed", "reason"}:
        metric, schema = "schema", parameters
    elif not tools and '"rating"' in system:
        metric, scale = "rating", _scale_from_text(system)
    elif not tools and SCHEMA_MARKER in system:
        metric, schema = "schema", _schema_from_text(system)
    elif not tools and '"score": <number' in system:
        metric = "comparison"
    return ChatRequest(
        target=target,
        model=body.get("model") if isinstance(body.get("model"), str) else None,
        tools_offered=bool(tools),
        n=n,
        metric=metric,
        scale=scale,
        tool_name=function.get("name") if tools else None,
        schema=schema,
    )


#: What precedes the verdict's JSON schema in a custom judge's system prompt (json mode).
SCHEMA_MARKER = "conforming to this JSON schema:"


def _schema_from_text(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text.split(SCHEMA_MARKER, 1)[1].strip().splitlines()[0])
    except (IndexError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


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


def embeddings_request(body: dict[str, Any], target: str | None, n: int) -> ChatRequest:
    """What a behaviour sees of an embeddings ``body``."""
    model = body.get("model")
    return ChatRequest(
        target=target,
        model=model if isinstance(model, str) else None,
        tools_offered=False,
        n=n,
        endpoint="embeddings",
    )


def embeddings_inputs(body: Any) -> list[str] | None:
    """The texts of an embeddings body (``input``: a string or a list of strings), or None."""
    if not isinstance(body, dict):
        return None
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return None
    return texts


# --- writing replies -------------------------------------------------------------------------

#: Dimensions of a simulated embedding when the request does not ask for a number.
EMBEDDING_DIMENSIONS = 64


def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for ``text``: each lower-cased word adds +-1 to a dimension
    chosen by its hash (feature hashing), so texts that share words have a high cosine."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[^\W_]+", text.casefold()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:  # no words: a fixed direction, never the zero vector
        return [1.0] + [0.0] * (dimensions - 1)
    return [x / norm for x in vector]


def embeddings_body(body: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """An OpenAI embeddings response for ``texts``, as floats or base64 (``encoding_format``)."""
    size = body.get("dimensions")
    size = size if isinstance(size, int) and 0 < size <= 4096 else EMBEDDING_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector: Any = embedding(text, size)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(text.split()) + 1 for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model") or "sim-embed",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def response_body(reply: Reply, request: ChatRequest, body: dict[str, Any]) -> dict[str, Any]:
    """``reply`` as the JSON body OpenAI would send: a chat completion, or an error."""
    if reply.kind == "error":
        return error_body(reply.message or "", reply.type, reply.code, reply.param)
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
    if request.metric == "schema":
        return _mapping(_instance(request.schema or {}, passed, key))
    if request.metric == "comparison":
        score = _share(passed, _unit("score", key), 0.0, 1.0)
        return {"score": round(score, 3), "reason": reply.reason or f"Matches to {score:.0%}."}
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


def _share(passed: bool, unit: float, low: float, high: float) -> float:
    """A value in the upper 40% of low..high when passed, else in the lower 40%."""
    return low + (0.6 + 0.4 * unit if passed else 0.4 * unit) * (high - low)


def _instance(
    schema: dict[str, Any], passed: bool, key: str, root: dict[str, Any] | None = None
) -> Any:
    """A value fitting a simple verdict schema: booleans say ``passed``, numbers lie high in
    their range when passed and low otherwise, strings explain (enums take their first).
    Local references (``#/$defs/...``) are followed."""
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        target: Any = root
        for part in filter(None, ref[1:].split("/")):
            target = _mapping(target).get(part)
        return _instance(_mapping(target), passed, key, root)
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = _mapping(schema.get("properties"))
        return {
            name: _instance(_mapping(sub), passed, key, root) for name, sub in properties.items()
        }
    if kind == "boolean":
        return passed
    if kind in ("number", "integer"):
        low = schema.get("minimum", 0 if kind == "number" else 1)
        high = schema.get("maximum", 1 if kind == "number" else 5)
        value = _share(passed, _unit("score", key), float(low), float(high))
        return round(value) if kind == "integer" else round(value, 3)
    if kind == "array":
        return []
    if kind == "null":
        return None
    return "The output meets the criteria." if passed else "The output misses the criteria."


def error_body(
    message: str,
    type: str | None = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """An error body in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _retry_after_headers(seconds: float) -> dict[str, str]:
    return {
        "Retry-After": str(max(0, math.ceil(seconds))),
        "retry-after-ms": str(max(0, round(seconds * 1000))),
    }


def _unit(salt: str, key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same on every run and every machine."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
