from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware.core import redaction
from middleware.core.redaction import REDACTED, redact, redact_text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: sk-proj-abcdefghijklmnop", "sk-proj-abcdefghijklmnop"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9"),
        ("dsn https://0123456789abcdef@o1.ingest.sentry.io/42", "0123456789abcdef"),
        ("cannot reach redis://user:hunter2@cache:6379/0", "hunter2"),
        ("cannot reach redis://:hunter2@cache:6379/0", "hunter2"),
        ("retrying with api_key=abc123def", "abc123def"),
        ('{"password": "correct horse"}', "correct"),
    ],
)
def test_secrets_written_into_text_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact_text(text)
    assert REDACTED in redact_text(text)


def test_ordinary_text_is_left_alone() -> None:
    text = "max_tokens=5 and total_tokens: 12 at https://example.com/v1/chat?x=1"
    assert redact_text(text) == text


def test_values_under_secret_keys_are_redacted_at_any_depth_and_in_any_case_style() -> None:
    value = {
        "api_key": "k",
        "headers": {"X-Api-Key": "k", "Authorization": "Bearer t"},
        "items": [{"accessToken": "t", "refresh_token": "t", "client_secret": "s"}],
        "password": 123,
        "max_tokens": 256,
        "total_tokens": 12,
        "token_count": 3,
    }
    redacted = redact(value)
    assert redacted["api_key"] == REDACTED
    assert redacted["headers"] == {"X-Api-Key": REDACTED, "Authorization": REDACTED}
    assert redacted["items"] == [
        {"accessToken": REDACTED, "refresh_token": REDACTED, "client_secret": REDACTED}
    ]
    assert redacted["password"] == REDACTED
    assert (redacted["max_tokens"], redacted["total_tokens"], redacted["token_count"]) == (
        256,
        12,
        3,
    )


def test_redact_returns_a_copy_and_leaves_the_original_untouched() -> None:
    value = {"api_key": "k", "nested": ["sk-abcdefghijklmnop"]}
    redact(value)
    assert value == {"api_key": "k", "nested": ["sk-abcdefghijklmnop"]}


# --- the substring tests before each pattern change nothing ---------------------------------


def _every_pattern(text: str) -> str:
    """What redact_text returned before it tested for substrings: every pattern, always."""
    patterns = redaction._SECRET_TEXT
    text = patterns[0].sub(REDACTED, text)
    text = patterns[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = patterns[2].sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return patterns[3].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


_PIECES = st.sampled_from([
    "sk-", "pk-", "rk-", "Bearer ", "BASIC ", "ba\u017fic ", "bearer\t", "https://",
    "redis://u:p@", "@", ":", "=", '"', "api_key", "ApiKey", "access-token", "Token",
    "client_secret", "PASSWORD", "passwd", "Authorization", "\u017fecret", "toKen", "\u0130",
    "\u0131", "abcdefgh12345678", " ", "\n", "/", ".", "-", "_",
])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=20).map("".join))
def test_redact_text_gives_what_every_pattern_run_on_every_text_gives(text: str) -> None:
    assert redact_text(text) == _every_pattern(text)


def test_only_the_folded_characters_match_ascii_letters_case_insensitively() -> None:
    letter = re.compile(r"(?i)[a-z]")
    matching = {
        chr(c) for c in range(128, 0x110000)
        if not 0xD800 <= c <= 0xDFFF and letter.fullmatch(chr(c))
    }  # fmt: skip
    assert matching == set("\u0130\u0131\u017f\u212a")
    for char in matching:
        folded = char.translate(redaction._FOLD_TO_ASCII)
        assert re.fullmatch(f"(?i){re.escape(folded)}", char)
