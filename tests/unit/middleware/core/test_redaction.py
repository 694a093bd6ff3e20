from __future__ import annotations

import pytest

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
