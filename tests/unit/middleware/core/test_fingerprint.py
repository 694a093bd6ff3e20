"""The Sentry fingerprint: one failure on many jobs reads the same; different failures never do."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from middleware.core.fingerprint import fingerprint, normalise_message


class ProviderQuirk(Exception):
    pass


def _root_of_json_error() -> json.JSONDecodeError:
    try:
        json.loads("{not json")
    except json.JSONDecodeError as error:
        return error
    raise AssertionError("unreachable")


# --- the same failure on different jobs ------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            f"evaluation {uuid.uuid4()} has no target",
            f"evaluation {uuid.uuid4()} has no target",
            id="uuids",
        ),
        pytest.param(
            f"evaluation {uuid.uuid4().hex} has no target",
            f"evaluation {uuid.uuid4().hex.upper()} has no target",
            id="uuids-without-dashes",
        ),
        pytest.param(
            "failed after 3 attempts in 12.5s", "failed after 11 attempts in 0.2s", id="numbers"
        ),
        pytest.param(
            "unknown metric 'exact_matc'", "unknown metric 'lexical_overlapp'", id="single-quoted"
        ),
        pytest.param(
            'unknown model "gpt-4o"', 'unknown model "claude-3.5-sonnet"', id="double-quoted"
        ),
        pytest.param("KeyError: 'target'", "KeyError: 'evaluation'", id="key-error"),
        pytest.param(
            "object <Judge at 0x7f3a2b1c0d90> is not callable",
            "object <Judge at 0x55d0c0ffee00> is not callable",
            id="0x-addresses",
        ),
        pytest.param(
            "request req_8f3a9b2c4d5e6f7a8b9c0d1e2f3a4b5c failed",
            "request req_0123456789abcdef0123456789abcdef failed",
            id="request-ids",
        ),
        pytest.param(
            "digest 9f86d081884c7d659a2feaa0c55ad015 mismatch",
            "digest 2c26b46b68ffc68ff99b453c1d304134 mismatch",
            id="hex-runs",
        ),
        pytest.param(
            "GET https://api.example.com/v1/models?page=2&after=abc returned nothing",
            "GET https://api.example.com/v1/models?page=7#top returned nothing",
            id="url-query-strings",
        ),
        pytest.param(
            "mail to ada@example.org bounced",
            "mail to bob.smith+x@corp.example.com bounced",
            id="emails",
        ),
        pytest.param(
            "deadline   exceeded\n\tfor job", "deadline exceeded for job", id="whitespace"
        ),
        pytest.param(
            "Input should be a valid integer [input_value='abc def ghi', input_type=str]",
            "Input should be a valid integer [input_value='x', input_type=str]",
            id="values-after-equals",
        ),
        pytest.param(
            "Error code: 400 - {'error': {'message': 'context length 9000 exceeds 8192 tokens', "
            "'code': 'context_length_exceeded', 'param': 'messages'}}",
            "Error code: 400 - {'error': {'message': 'context length 12001 exceeds 8192 tokens', "
            "'code': 'other', 'param': 'input'}}",
            id="provider-body-with-volatile-values",
        ),
    ],
)
def test_the_same_failure_with_different_volatile_parts_normalises_the_same(
    first: str, second: str
) -> None:
    assert normalise_message(first) == normalise_message(second)


# --- different failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            "tools is not supported in this model", "context length exceeded", id="different-words"
        ),
        pytest.param(
            "Error code: 400 - {'error': {'message': 'tools is not supported in this model'}}",
            "Error code: 400 - {'error': {'message': 'this model does not support logprobs'}}",
            id="provider-messages-in-a-body",
        ),
        pytest.param(
            "Error code: 400 - {'error': {'message': 'bad'}}",
            "Error code: 500 - {'error': {'message': 'bad'}}",
            id="http-status-after-code",
        ),
        pytest.param(
            "HTTP 502 from upstream", "HTTP 504 from upstream", id="http-status-after-http"
        ),
        pytest.param("status=429", "status=503", id="status-equals"),
        pytest.param(
            "response body: {'error': 'x'}", "response body: {'detail': 'x'}", id="mapping-keys"
        ),
        pytest.param("connection refused", "connection reset", id="one-word-apart"),
    ],
)
def test_different_failures_normalise_differently(first: str, second: str) -> None:
    assert normalise_message(first) != normalise_message(second)


def test_normalisation_keeps_the_words_that_say_what_happened() -> None:
    text = "job 3f2b9c1e-8a4d-4e2f-9b1a-0c2d3e4f5a6b: model 'gpt-4o' says tools is not supported"

    assert normalise_message(text) == "job <uuid>: model <str> says tools is not supported"


def test_apostrophes_in_words_are_not_quotes() -> None:
    assert normalise_message("don't know what 'target' isn't") == ("don't know what <str> isn't")


def test_secrets_never_reach_the_fingerprint() -> None:
    text = (
        "call with sk-proj-abcdefghijklmnopqrstuv failed; Authorization: Bearer abcdefghijklmnop;"
        " dsn https://0123456789abcdef@o123.ingest.sentry.io/4567"
    )

    normalised = normalise_message(text)

    assert "abcdefghijklmnopqrstuv" not in normalised
    assert "abcdefghijklmnop" not in normalised
    assert "0123456789abcdef" not in normalised


def test_a_huge_message_is_normalised_quickly_and_stays_short() -> None:
    text = ("x" * 50 + " 12345 '" + "y" * 40 + "' ") * 20_000

    started = time.perf_counter()
    normalised = normalise_message(text)

    assert time.perf_counter() - started < 0.5
    assert len(normalised) <= 300


def test_an_empty_message_normalises_to_an_empty_string() -> None:
    assert normalise_message("  \n\t ") == ""


# --- the fingerprint -------------------------------------------------------------------------


def test_the_fingerprint_is_evalq_actor_dotted_root_type_and_normalised_message() -> None:
    root = ProviderQuirk(f"tools is not supported (request {uuid.uuid4()})")

    parts = fingerprint("run_llm_evaluation", root)

    assert parts == [
        "evalq",
        "run_llm_evaluation",
        f"{ProviderQuirk.__module__}.ProviderQuirk",
        "tools is not supported (request <uuid>)",
    ]


def test_the_fingerprint_names_library_and_builtin_types_by_dotted_name() -> None:
    assert fingerprint("a", _root_of_json_error())[2] == "json.decoder.JSONDecodeError"
    assert fingerprint("a", ValueError("x"))[2] == "builtins.ValueError"


def test_the_same_root_cause_on_two_jobs_has_one_fingerprint() -> None:
    first = ProviderQuirk(f"no judge for evaluation {uuid.uuid4()} after 3 tries")
    second = ProviderQuirk(f"no judge for evaluation {uuid.uuid4()} after 5 tries")

    assert fingerprint("run_llm_evaluation", first) == fingerprint("run_llm_evaluation", second)


def test_the_fingerprint_tells_actors_and_root_types_apart() -> None:
    root = ProviderQuirk("boom")

    assert fingerprint("run_llm_evaluation", root) != fingerprint("run_rule_evaluation", root)
    assert fingerprint("a", ProviderQuirk("boom")) != fingerprint("a", RuntimeError("boom"))


def test_the_fingerprint_reads_a_message_attribute_before_str() -> None:
    class ApiError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__("Error code: 400")
            self.message = message

    assert fingerprint("a", ApiError("tools is not supported"))[3] == "tools is not supported"


def test_an_unprintable_exception_still_has_a_fingerprint() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert fingerprint("a", Unprintable())[3] == ""
