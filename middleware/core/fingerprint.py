"""The fingerprint of a failure: one Sentry issue per root cause, whatever job or wrapper.

``fingerprint(actor, root)`` names a failure by the actor, the dotted type of its root cause and
that cause's message with its volatile parts (ids, numbers, quoted values, secrets) replaced by
placeholders, so that one failure on many jobs reads the same and two failures never do. Pure
functions: ``middleware.sentry`` attaches the result to the events it sends.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from middleware.core.facts import type_names
from middleware.core.redaction import redact_text

_MESSAGE_LIMIT = 4000
_NORMALISED_LIMIT = 300

_URL_QUERY = re.compile(r"""(?i)\b([a-z][a-z0-9+.\-]*://[^\s?#'"<>]*)[?#][^\s'"<>]*""")
_EMAIL = re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b")
_QUOTED = re.compile(r"""(?<!\w)'[^'\n]*'(?!\w)|"(?:[^"\\\n]|\\.)*\"""")
_UUID = re.compile(r"(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")
_HEX = re.compile(r"(?i)\b0x[0-9a-f]+\b")
# Identifiers that mix letters and digits (request ids, hex digests, generated names).
_MIXED_ID = re.compile(r"(?i)\b(?=\w*\d)(?=\w*[a-z])\w{8,}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
# An HTTP status after "status", "code" or "HTTP" tells failures apart: it is kept.
_STATUS_BEFORE = re.compile(r"(?i)\b(?:status|code|http(?:/[\d.]+)?)\W{0,3}$")
_SPACE = re.compile(r"\s+")


def normalise_message(text: str) -> str:
    """``text`` without its volatile parts, so that one failure on many jobs reads the same.

    Secrets, URL query strings, e-mail addresses, quoted values, UUIDs, hex numbers, identifiers
    mixing letters and digits and numbers become placeholders; whitespace is collapsed. Kept, as
    they tell failures apart: an HTTP status after "status", "code" or "HTTP", quoted mapping
    keys, and quoted prose of three words or more (a provider's error message in a body).
    """
    text = redact_text(text[:_MESSAGE_LIMIT])
    text = _URL_QUERY.sub(r"\1", text)
    text = _EMAIL.sub("<email>", text)
    text = _QUOTED.sub(_quoted_placeholder, text)
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<hex>", text)
    text = _MIXED_ID.sub("<id>", text)
    text = _NUMBER.sub(_number_placeholder, text)
    return _SPACE.sub(" ", text).strip()[:_NORMALISED_LIMIT]


def _quoted_placeholder(match: re.Match[str]) -> str:
    # Keys ('error': ...) are structure, and quoted prose is usually the provider's own error
    # message inside a response body: both tell failures apart. A quoted word, name or id, or
    # anything after "=", is a value.
    quoted = match.group(0)
    after = match.string[match.end() : match.end() + 3].lstrip()
    before = match.string[match.start() - 1 : match.start()] if match.start() else ""
    if after.startswith(":"):
        return quoted
    if before != "=" and len(quoted.split()) >= 3:
        return quoted[0] + _QUOTED.sub(_quoted_placeholder, quoted[1:-1]) + quoted[-1]
    return "<str>"


def _number_placeholder(match: re.Match[str]) -> str:
    number = match.group(0)
    before = match.string[max(0, match.start() - 24) : match.start()]
    if len(number) == 3 and "100" <= number <= "599" and _STATUS_BEFORE.search(before):
        return number
    return "<n>"


def fingerprint(actor: str, root: BaseException) -> list[str]:
    """``["evalq", actor, dotted type of the root cause, its normalised message]``."""
    return ["evalq", actor, type_names(type(root))[0], normalise_message(_message_of(root))]


def _message_of(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        return message
    try:
        return str(exc)
    except Exception:
        return ""


def digest(parts: Iterable[str]) -> str:
    """A short, stable digest of a fingerprint's ``parts``: the key of a job's "sent" marker."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
