"""The facts of an exception that policy rules match on, read without trusting the exception."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from middleware.core.errors import MESSAGE_LIMIT, CategorizedError


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What the rules can match on one exception.

    ``types`` are the dotted names (``module.QualName``) of its class and every base but
    ``object``, most derived first; ``retry_after_s`` is in seconds.
    """

    types: tuple[str, ...]
    message: str = ""
    status: int | None = None
    code: str | None = None
    error_type: str | None = None
    retry_after_s: float | None = None
    explicit_category: str | None = None
    forced_action: str | None = None


def facts_of(exc: BaseException, *, now: float) -> ErrorFacts:
    """Read the facts of ``exc`` without trusting it: a broken attribute is an absent one.

    ``now`` (epoch seconds) turns a Retry-After HTTP date into a delay.
    """
    names, plain = _class_facts(type(exc))
    if plain and _FACT_ATTRS.isdisjoint(_instance_dict(exc)):
        # Most exceptions (builtins, app errors) have none of the attributes below: skip them.
        return ErrorFacts(types=names, message=_message(exc))
    status = _int(_attr(exc, "status_code"))
    if status is None:
        status = _int(_attr(exc, "status"))
    if status is None:
        status = _int(_attr(exc, "http_status"))
    response = _attr(exc, "response")
    if status is None and response is not None:
        status = _int(_attr(response, "status_code"))
    body = _error_body(_attr(exc, "body"))
    code = _text(_attr(exc, "code")) or _text(body.get("code"))
    error_type = _text(_attr(exc, "type")) or _text(body.get("type"))
    explicit: str | None = None
    forced: str | None = None
    retry_after: float | None = None
    if isinstance(exc, CategorizedError):
        explicit, forced = exc.category, exc.forced_action
        retry_after = _seconds(exc.retry_after)
    if retry_after is None and response is not None:
        headers = _attr(response, "headers")
        if headers is not None:
            retry_after = parse_retry_after(headers, now=now)
    return ErrorFacts(
        types=names,
        message=_message(exc),
        status=status,
        code=code,
        error_type=error_type,
        retry_after_s=retry_after,
        explicit_category=explicit,
        forced_action=forced,
    )


#: The attributes ``facts_of`` reads.
_FACT_ATTRS = frozenset(
    ("status_code", "status", "http_status", "response", "body", "code", "type", "message")
)
_DYNAMIC = frozenset(("__getattr__", "__getattribute__"))
_CLASS_FACTS: dict[type, tuple[tuple[str, ...], bool]] = {}


def _class_facts(cls: type) -> tuple[tuple[str, ...], bool]:
    """(``type_names(cls)``, whether no class in its MRO defines an attribute we read)."""
    known = _CLASS_FACTS.get(cls)
    if known is None:
        names = tuple(
            f"{getattr(klass, '__module__', None) or '?'}."
            f"{getattr(klass, '__qualname__', klass.__name__)}"
            for klass in cls.__mro__
            if klass is not object
        )
        plain = not any(
            _FACT_ATTRS.intersection(vars(klass)) or _DYNAMIC.intersection(vars(klass))
            for klass in cls.__mro__
            if klass is not object and klass is not BaseException
        )
        if len(_CLASS_FACTS) >= 2048:  # classes made on the fly must not grow this forever
            _CLASS_FACTS.clear()
        known = _CLASS_FACTS[cls] = (names, plain)
    return known


def type_names(cls: type) -> tuple[str, ...]:
    """Dotted names of ``cls`` and its bases (MRO order), ``object`` left out."""
    return _class_facts(cls)[0]


def _instance_dict(exc: BaseException) -> dict[str, Any]:
    try:
        found = exc.__dict__
    except Exception:
        return {}
    return found if isinstance(found, dict) else {}


def parse_retry_after(headers: Any, *, now: float) -> float | None:
    """The delay a response asks for, in seconds: ``retry-after-ms`` first, then ``retry-after``
    (seconds or an HTTP date, taken relative to ``now`` in epoch seconds). Never negative; None
    when absent or unreadable. Header names are matched without regard to case.
    """
    millis = _number(_header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates: UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, ValueError, OSError):
        return None


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
        # Plain dicts are case-sensitive; header classes (httpx, http.client) are not.
        if value is None and isinstance(headers, dict):
            value = next((v for k, v in headers.items() if _lower(k) == name), None)
    except Exception:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.strip() if isinstance(value, str) else None


def _lower(key: Any) -> str | None:
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    return key.lower() if isinstance(key, str) else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _attr(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that raises is an absent fact
        return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _error_body(body: object) -> Mapping[Any, Any]:
    """The provider's error object: ``body["error"]`` when it is one, else ``body`` itself."""
    if body is None or not isinstance(body, _MAPPINGS):
        return _EMPTY
    try:
        inner = body.get("error")
    except Exception:
        return _EMPTY
    return inner if isinstance(inner, _MAPPINGS) else body


_EMPTY: Mapping[Any, Any] = {}
_MAPPINGS = (dict, Mapping)  # dict first: the common case skips the ABC check


def _message(exc: BaseException) -> str:
    message = _attr(exc, "message")
    if not isinstance(message, str):
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {type(exc).__name__}>"
    return message[:MESSAGE_LIMIT]
