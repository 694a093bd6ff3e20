"""A failure in words: the exception type, message and traceback that timelines, dead-letter
records and decision logs show."""

from __future__ import annotations

import traceback


def type_name(exc: BaseException | None) -> str:
    """``exc``'s class as a dotted name (builtins unqualified: ``ValueError``); "" for None."""
    if exc is None:
        return ""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def error_message(exc: BaseException | None) -> str:
    """``exc``'s message (its ``message`` attribute when it has one), at most 2,000 characters."""
    if exc is None:
        return ""
    text = getattr(exc, "message", None)
    return (text if isinstance(text, str) else str(exc))[:2000]


def traceback_text(exc: BaseException | None) -> str:
    """``exc``'s formatted traceback, chain included; the last 8,000 characters."""
    if exc is None:
        return ""
    return "".join(traceback.format_exception(exc))[-8000:]
