from __future__ import annotations

import pickle
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx2
import openai
import pytest

from config.policy import CATEGORIES
from middleware.core import errors
from middleware.core.errors import (
    MESSAGE_LIMIT,
    CategorizedError,
    JobAborted,
    JobExpired,
    NonRetryable,
    RateLimited,
    Retryable,
)
from middleware.core.facts import ErrorFacts, facts_of, parse_retry_after

NOW = 1_800_000_000.0


def api_error(
    cls: type[openai.APIStatusError],
    status: int,
    message: str,
    *,
    code: str | None = None,
    type: str | None = None,
    headers: dict[str, str] | None = None,
    wrapped_body: bool = False,
) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://provider.invalid/v1/chat/completions")
    response = httpx2.Response(status, request=request, headers=headers or {})
    inner = {"message": message, "type": type, "param": None, "code": code}
    body = {"error": inner} if wrapped_body else inner
    return cls(f"Error code: {status} - {message}", response=response, body=body)


# ---- categorized exceptions ---------------------------------------------------------------------


def test_a_categorized_error_carries_its_class_category_unless_given_one() -> None:
    assert RateLimited("slow down").category == "rate_limited"
    assert RateLimited("slow down", category="quota_exhausted").category == "quota_exhausted"
    assert RateLimited("x", retry_after=2.5).retry_after == 2.5
    assert RateLimited.forced_action is None


def test_every_categorized_subclass_names_a_known_category() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type)]
    subclasses = [c for c in classes if issubclass(c, CategorizedError)]
    assert len(subclasses) >= 16
    assert all(c.category in CATEGORIES for c in subclasses)
    assert JobAborted("stop").category == "aborted"
    assert JobExpired("late").category == "expired"


def test_an_unknown_category_is_a_bug_caught_at_once() -> None:
    with pytest.raises(ValueError, match="unknown category 'rate_limit'"):
        RateLimited("x", category="rate_limit")
    with pytest.raises(TypeError, match="is not a category"):

        class Wrong(CategorizedError):
            category = "nope"


def test_non_retryable_forces_a_dead_letter_under_its_category() -> None:
    error = NonRetryable("bad input")
    assert (error.category, error.forced_action) == ("invalid_request", "dead_letter")
    assert NonRetryable("x", category="auth").category == "auth"


def test_retryable_forces_a_retry_and_may_say_when() -> None:
    error = Retryable("try later", retry_after=3)
    assert (error.category, error.forced_action, error.retry_after) == (
        "provider_unavailable",
        "retry",
        3,
    )
    assert Retryable("x", category="timeout").category == "timeout"


def test_categorized_errors_survive_pickling_with_their_category() -> None:
    error = Retryable("try later", retry_after=1.5, category="timeout")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.message, copy.category, copy.retry_after) == (
        Retryable,
        "try later",
        "timeout",
        1.5,
    )


# ---- facts of an exception ----------------------------------------------------------------------


def test_facts_of_an_openai_status_error_read_status_code_type_and_message() -> None:
    error = api_error(
        openai.RateLimitError,
        429,
        "You exceeded your current quota",
        code="insufficient_quota",
        type="insufficient_quota",
    )
    facts = facts_of(error, now=NOW)
    assert facts.status == 429
    assert facts.code == "insufficient_quota"
    assert facts.error_type == "insufficient_quota"
    assert facts.message == "Error code: 429 - You exceeded your current quota"
    assert facts.types[:4] == (
        "openai.RateLimitError",
        "openai.APIStatusError",
        "openai.APIError",
        "openai.OpenAIError",
    )
    assert facts.types[-2:] == ("builtins.Exception", "builtins.BaseException")
    assert "builtins.object" not in facts.types
    assert (facts.explicit_category, facts.forced_action) == (None, None)


def test_code_and_type_are_read_from_a_body_wrapped_in_error() -> None:
    error = api_error(
        openai.BadRequestError, 400, "too long", code="context_length_exceeded", wrapped_body=True
    )
    assert error.code is None  # the SDK only reads the inner form
    facts = facts_of(error, now=NOW)
    assert facts.code == "context_length_exceeded"


def test_retry_after_is_read_from_the_response_headers() -> None:
    error = api_error(
        openai.RateLimitError, 429, "slow down", headers={"Retry-After": "7", "x-other": "1"}
    )
    assert facts_of(error, now=NOW).retry_after_s == 7.0


def test_status_may_come_from_status_or_http_status() -> None:
    class WithStatus(Exception):
        status = 503

    class WithHttpStatus(Exception):
        def __init__(self) -> None:
            super().__init__("x")
            self.http_status = 502

    class WithResponse(Exception):
        def __init__(self) -> None:
            super().__init__("x")
            self.response = type("R", (), {"status_code": 504, "headers": {}})()

    assert facts_of(WithStatus(), now=NOW).status == 503
    assert facts_of(WithHttpStatus(), now=NOW).status == 502
    assert facts_of(WithResponse(), now=NOW).status == 504


def test_a_plain_exception_has_only_its_types_and_message() -> None:
    facts = facts_of(KeyError("missing"), now=NOW)
    assert facts == ErrorFacts(
        types=("builtins.KeyError", "builtins.LookupError", "builtins.Exception",
               "builtins.BaseException"),
        message="'missing'",
    )  # fmt: skip


def test_a_categorized_error_gives_its_category_action_and_retry_after() -> None:
    facts = facts_of(Retryable("later", retry_after=2, category="timeout"), now=NOW)
    assert (facts.explicit_category, facts.forced_action, facts.retry_after_s) == (
        "timeout",
        "retry",
        2.0,
    )
    assert facts.message == "later"


def test_the_message_is_capped() -> None:
    facts = facts_of(ValueError("x" * 10_000), now=NOW)
    assert len(facts.message) == MESSAGE_LIMIT


def test_weird_exceptions_never_make_facts_of_raise() -> None:
    class Hostile(Exception):
        @property
        def status_code(self) -> int:
            raise RuntimeError("no")

        @property
        def response(self) -> Any:
            raise RuntimeError("no")

        @property
        def body(self) -> Any:
            raise RuntimeError("no")

        def __str__(self) -> str:
            raise RuntimeError("no")

    class Odd(Exception):
        status_code = True  # a bool is not a status
        code = ["list"]
        type = 3.5
        message = None
        body = "not a dict"

        def __init__(self) -> None:
            super().__init__("odd one")
            headers = {1: 2, "Retry-After": object()}
            self.response = type("R", (), {"headers": headers})()

    class BadHeaders:
        def get(self, name: str) -> Any:
            raise KeyError(name)

    class BadResponse(Exception):
        def __init__(self) -> None:
            super().__init__("bad headers")
            self.response = type("R", (), {"headers": BadHeaders()})()

    class BadBody(Exception):
        body = {"error": "a string, not a table", "code": 42}

    hostile = facts_of(Hostile(), now=NOW)
    assert (hostile.status, hostile.message) == (None, "<unprintable Hostile>")
    odd = facts_of(Odd(), now=NOW)
    assert (odd.status, odd.code, odd.error_type, odd.retry_after_s) == (None, None, None, None)
    assert odd.message == "odd one"
    assert facts_of(BadResponse(), now=NOW).retry_after_s is None
    assert facts_of(BadBody(), now=NOW).code == "42"


def test_dynamic_attributes_are_still_read() -> None:
    class Dynamic(Exception):
        def __getattr__(self, name: str) -> Any:
            if name == "status_code":
                return 418
            raise AttributeError(name)

    assert facts_of(Dynamic("x"), now=NOW).status == 418


# ---- Retry-After --------------------------------------------------------------------------------


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now=NOW) == 1.5


def test_retry_after_in_seconds_may_be_fractional() -> None:
    assert parse_retry_after({"retry-after": "2.5"}, now=NOW) == 2.5


def test_retry_after_as_an_http_date_is_relative_to_now() -> None:
    when = datetime.fromtimestamp(NOW + 30, tz=UTC)
    assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}, now=NOW) == 30.0


def test_a_retry_after_date_in_the_past_means_now() -> None:
    when = datetime.fromtimestamp(NOW - 30, tz=UTC)
    assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}, now=NOW) == 0.0


def test_header_names_are_matched_without_regard_to_case() -> None:
    assert parse_retry_after({"Retry-After": "4"}, now=NOW) == 4.0
    assert parse_retry_after({"RETRY-AFTER-MS": "250"}, now=NOW) == 0.25
    assert parse_retry_after(httpx2.Headers({"Retry-After": "3"}), now=NOW) == 3.0
    assert parse_retry_after({b"retry-after": b"5"}, now=NOW) == 5.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "soon"},
        {"retry-after": "-3"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after": 5},
        {"retry-after-ms": "lots"},
        None,
        "retry-after: 3",
    ],
)
def test_an_absent_or_unreadable_retry_after_is_none(headers: Any) -> None:
    assert parse_retry_after(headers, now=NOW) is None


def test_an_unreadable_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}, now=NOW) == 2.0
