"""What is wrong with a broker message, before any worker thread touches it.

A queue can hold anything a producer pushed: invalid JSON, JSON that is not a message, a message
naming another queue or an unknown actor, arguments that do not fit the actor. Each is a
permanent ``invalid_payload`` failure; these functions name the problem in one sentence and
never raise.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

#: Longest part of an undecodable message kept in its dead-letter record, in characters.
RAW_EXCERPT_CHARS: Final = 4_000

_FIELDS: Final[dict[str, type | tuple[type, ...]]] = {
    "queue_name": str,
    "actor_name": str,
    "args": (list, tuple),
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}

#: Fields Dramatiq's ``Message.decode`` needs (``message_id`` is evalq's job id).
_REQUIRED: Final = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id")


def decode_problem(error: BaseException) -> str:
    """Why raw message bytes could not be decoded into a Dramatiq message."""
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8 at byte {error.start}"
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply to decode"
    if isinstance(error, TypeError):
        return "not a Dramatiq message (JSON, but not an object with a message's fields)"
    return f"could not be decoded: {type(error).__name__}"


def fields_problem(fields: Any) -> str | None:
    """Why decoded JSON is not a Dramatiq message, or None."""
    if not isinstance(fields, dict):
        return f"not a Dramatiq message (a JSON {type(fields).__name__}, not an object)"
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        return f"not a Dramatiq message (no {', '.join(missing)})"
    unknown = sorted(str(name) for name in fields if name not in _FIELDS)
    if unknown:
        # Dramatiq's Message takes exactly its own fields: any other makes its decode fail.
        shown = ", ".join(repr(name[:40]) for name in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        return f"not a Dramatiq message (unknown field {shown}{more})"
    for name, kind in _FIELDS.items():
        if name not in fields:
            continue
        value = fields[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{name} is a {type(value).__name__}, not {_kind_name(kind)}"
    return None


def delivery_problem(
    *,
    queue_name: str,
    actor_name: str,
    args: Any,
    kwargs: Any,
    options: Any,
    consumed_queue: str,
    actors: Mapping[str, Any],
    signature_of: Callable[[str], inspect.Signature | None],
) -> str | None:
    """Why a decoded message cannot run where it was delivered, or None.

    ``actors`` are the broker's declared actors; ``signature_of(actor)`` is the (cached)
    signature of an actor's function, or None when it cannot be known.
    """
    if queue_name != consumed_queue:
        return f"names queue {queue_name!r} but was delivered on {consumed_queue!r}"
    if actor_name not in actors:
        return f"names actor {actor_name!r}, which no module of this worker declares"
    if not isinstance(options, dict):
        return f"options is a {type(options).__name__}, not an object"
    if not isinstance(args, list | tuple):
        return f"args is a {type(args).__name__}, not an array"
    if not isinstance(kwargs, dict):
        return f"kwargs is a {type(kwargs).__name__}, not an object"
    signature = signature_of(actor_name)
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            return f"arguments do not fit {actor_name}: {error}"
    return None


def raw_excerpt(data: bytes) -> str:
    """Readable text of raw message bytes, capped (undecodable bytes shown as escapes)."""
    text = data[: RAW_EXCERPT_CHARS * 4].decode("utf-8", errors="backslashreplace")
    if len(text) <= RAW_EXCERPT_CHARS:
        return text
    return text[:RAW_EXCERPT_CHARS] + f"… [{len(data)} bytes in all]"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", list: "an array"}
    if isinstance(kind, tuple):
        return names[kind[0]]
    return names[kind]
