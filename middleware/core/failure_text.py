"""A failure in words: the one path from an exception to the type, message and traceback that
timelines, dead-letter records and decision logs show.

Each function redacts secrets and caps the text once, here; what it returns is safe to store and
show as it is. Type names have one spelling everywhere (records, timelines, chain types, Sentry
fingerprints): the dotted name of the class, ``builtins.ValueError`` included. None of these
functions raises, whatever the exception does when asked to print itself.
"""

from __future__ import annotations

import traceback
from typing import Final

from middleware.core.facts import type_names
from middleware.core.redaction import redact_text

#: Longest error message kept, in characters (the head is kept).
MAX_ERROR_MESSAGE_CHARS: Final = 2_000
#: Longest traceback kept, in characters (the tail is kept: the last frames and the exception).
MAX_TRACEBACK_CHARS: Final = 8_000
#: How much text is redacted before it is cut: a secret straddling the cut is still seen whole.
_REDACTION_WINDOW: Final = 2


def type_name(exc: BaseException | None) -> str:
    """``exc``'s class as a dotted name (``openai.BadRequestError``, ``builtins.ValueError``);
    "" for None."""
    return "" if exc is None else type_names(type(exc))[0]


def error_message(exc: BaseException | None) -> str:
    """``exc``'s message (its ``message`` attribute when it has one), secrets redacted, capped
    (``cap_message``); a placeholder when the exception cannot even print itself."""
    if exc is None:
        return ""
    try:
        text = getattr(exc, "message", None)
        if not isinstance(text, str):
            text = str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
    return cap_message(redact_text(text[: MAX_ERROR_MESSAGE_CHARS * _REDACTION_WINDOW]))


def traceback_text(exc: BaseException | None) -> str:
    """``exc``'s formatted traceback, chain included, secrets redacted, capped
    (``cap_traceback``)."""
    if exc is None:
        return ""
    try:
        text = "".join(_without_carets(traceback.TracebackException.from_exception(exc)).format())
    except Exception:
        return f"<unprintable traceback of {type(exc).__name__}>"
    window = MAX_TRACEBACK_CHARS * _REDACTION_WINDOW
    return cap_traceback(redact_text(text[-window:]), already_cut=max(len(text) - window, 0))


def _without_carets(summary: traceback.TracebackException) -> traceback.TracebackException:
    """``summary`` (its whole chain, groups included) without column positions, so that it is
    formatted without the ``^^^^`` lines: Python 3.11 finds where they go by parsing each frame's
    source line, which cost more than the rest of a dead letter's formatting."""
    pending, seen = [summary], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for frame in current.stack:
            frame.colno = frame.end_colno = None
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += getattr(current, "exceptions", None) or []
    return summary


def cap_message(text: str) -> str:
    """``text``, or its first ``MAX_ERROR_MESSAGE_CHARS`` characters ending in an ellipsis."""
    if len(text) <= MAX_ERROR_MESSAGE_CHARS:
        return text
    return text[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"


def cap_traceback(text: str, *, already_cut: int = 0) -> str:
    """``text``, or its last ``MAX_TRACEBACK_CHARS`` characters after a line saying how many were
    cut (``already_cut`` more were cut before ``text``)."""
    if len(text) <= MAX_TRACEBACK_CHARS and not already_cut:
        return text
    dropped = max(len(text) - MAX_TRACEBACK_CHARS, 0)
    return f"[{dropped + already_cut} characters cut]\n" + text[dropped:]
