"""Redaction of secrets before anything is stored or sent: DLQ records, history, Sentry events."""

from __future__ import annotations

import functools
import re
from typing import Any

REDACTED = "[redacted]"

#: Mapping keys whose values are secrets, whatever they hold: the key is, or ends with, one of
#: these words ("x-api-key", "client_secret", "session_token"; not "max_tokens").
SECRET_KEY = re.compile(
    r"(^|[_\-. ])(api[_\-]?key|apikey|access[_\-]?key|secret[_\-]?key|private[_\-]?key|secret"
    r"|password|passwd|pwd|authorization|auth|dsn|cookie|set[_\-]cookie|credentials?|token)$",
    re.IGNORECASE,
)

_SECRET_TEXT = (
    # OpenAI-style keys (sk-..., sk-proj-...), and other long key-looking tokens with a prefix.
    re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{8,}"),
    # Authorization header values.
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    # Credentials in URLs (scheme://user:pass@host, scheme://:pass@host, scheme://key@host as
    # in a Sentry DSN).
    re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@"),
    # key=value and "key": "value" pairs written into text.
    re.compile(
        r"(?i)\b(api[_\-]?key|apikey|access[_\-]?token|refresh[_\-]?token|token|secret"
        r"|client[_\-]?secret|password|passwd|authorization)(\"?\s*[:=]\s*\"?)([^\s\"'&,;]+)"
    ),
)


#: The characters other than ASCII letters that the patterns' case-insensitive parts match as
#: ASCII letters ("ba\u017fic" matches "(?i)basic"), mapped to those letters: with them folded, a
#: pattern's words can be looked for with ``in`` first. A test checks this against every code
#: point.
_FOLD_TO_ASCII = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
#: Every word pattern 3 can match contains one of these.
_PAIR_WORDS = ("key", "token", "secret", "passw", "authorization")


def redact_text(text: str) -> str:
    """``text`` with key-looking tokens, bearer tokens and URL credentials replaced.

    Each pattern runs only when the text holds what it cannot match without (a substring test
    costs far less than a regex scan of the text); the result is the same as running them all.
    """
    if "k-" in text:
        text = _SECRET_TEXT[0].sub(REDACTED, text)
    # Text all ASCII holds none of the folded characters: translate() alone costs more than
    # every other test here together.
    folded = (text if text.isascii() else text.translate(_FOLD_TO_ASCII)).lower()
    if "bearer" in folded or "basic" in folded:
        text = _SECRET_TEXT[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "://" in text and "@" in text:
        text = _SECRET_TEXT[2].sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if ("=" in text or ":" in text) and any(word in folded for word in _PAIR_WORDS):
        text = _SECRET_TEXT[3].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text


def _snake(key: str) -> str:
    """``accessToken`` -> ``access_token``, so camelCase keys match like snake_case ones."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret. Cached: the keys of payloads and records repeat
    from one job to the next, and the test is most of what redacting a small payload costs."""
    return SECRET_KEY.search(_snake(key)) is not None


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of ``value`` with secrets redacted: values under secret-looking keys, at any depth,
    and secret-looking strings anywhere."""
    if _depth > 32:
        return REDACTED
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret_key(key)
            else redact(item, _depth=_depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item, _depth=_depth + 1) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
