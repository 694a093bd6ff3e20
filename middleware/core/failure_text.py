"""A failure in words: the exception type, message and traceback that timelines, dead-letter
records and decision logs show — secrets redacted, and never an exception of its own."""

from __future__ import annotations

import traceback

from middleware.core.redaction import redact_text


def type_name(exc: BaseException | None) -> str:
    """``exc``'s class as a dotted name (builtins unqualified: ``ValueError``); "" for None."""
    if exc is None:
        return ""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def error_message(exc: BaseException | None) -> str:
    """``exc``'s message (its ``message`` attribute when it has one), secrets redacted, at most
    2,000 characters; a placeholder when the exception cannot even print itself."""
    if exc is None:
        return ""
    try:
        text = getattr(exc, "message", None)
        if not isinstance(text, str):
            text = str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
    return redact_text(text[:4000])[:2000]


def traceback_text(exc: BaseException | None) -> str:
    """``exc``'s formatted traceback, chain included, secrets redacted; the last 8,000
    characters."""
    if exc is None:
        return ""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        return f"<unprintable traceback of {type(exc).__name__}>"
    return redact_text(text[-16000:])[-8000:]
