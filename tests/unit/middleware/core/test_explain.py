from __future__ import annotations

import textwrap
from typing import TypedDict

import pytest

from config.policy import CATEGORIES, Policy, load_policy, parse_policy
from config.settings import DEFAULT_POLICY_FILE
from middleware.core.explain import explain, find_exception_class


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(DEFAULT_POLICY_FILE)


class Where(TypedDict):
    actor: str
    queue: str
    env: str


def where(queue: str = "default", env: str = "production") -> Where:
    return {"actor": "some_actor", "queue": queue, "env": env}


def test_explain_answers_with_the_category_rule_and_resolved_policy(shipped: Policy) -> None:
    answer = explain(
        shipped,
        type_name="openai.BadRequestError",
        message="tools is not supported in this model",
        status=400,
        **where(),
    )
    assert answer == {
        "category": "model_capability",
        "rule": "capability_not_supported",
        "layer": "shipped",
        "action": "dead_letter",
        "max_retries": 0,
        "max_attempts": 12,
        "min_backoff_ms": 1000,
        "max_backoff_ms": 300000,
        "jitter": 0.25,
        "honor_retry_after": False,
        "report": False,
        "attempts_allowed": 1,
        "types": [
            "openai.BadRequestError",
            "openai.APIStatusError",
            "openai.APIError",
            "openai.OpenAIError",
            "builtins.Exception",
            "builtins.BaseException",
        ],
        "type_imported": True,
        "actor_options": [],
    }


def test_insufficient_quota_is_not_a_rate_limit(shipped: Policy) -> None:
    answer = explain(
        shipped,
        type_name="openai.RateLimitError",
        status=429,
        code="insufficient_quota",
        **where(),
    )
    assert (answer["category"], answer["report"], answer["attempts_allowed"]) == (
        "quota_exhausted",
        True,
        1,
    )


@pytest.mark.parametrize(
    ("queue", "env", "status", "attempts"),
    [
        ("default", "production", 429, 11),  # rate_limited: 10 retries + 1, under 12
        ("evaluations.live", "production", 429, 4),  # the live lane caps every job at 4
        ("default", "production", 503, 6),  # provider_unavailable: 5 retries + 1
        ("default", "production", 408, 3),  # timeout: 2 retries + 1
        ("default", "production", 401, 1),  # auth: dead-lettered at once
    ],
)
def test_a_job_failing_every_attempt_runs_retries_plus_one_within_the_cap(
    shipped: Policy, queue: str, env: str, status: int, attempts: int
) -> None:
    answer = explain(shipped, type_name="somesdk.Error", status=status, **where(queue, env))
    assert answer["attempts_allowed"] == attempts
    assert attempts == (
        min(answer["max_retries"] + 1, answer["max_attempts"]) if answer["action"] == "retry" else 1
    )


def test_unknown_errors_are_not_retried_in_development(shipped: Policy) -> None:
    production = explain(shipped, type_name="builtins.KeyError", **where(env="production"))
    development = explain(shipped, type_name="builtins.KeyError", **where(env="development"))
    assert (production["category"], production["attempts_allowed"]) == ("unknown", 3)
    assert (development["category"], development["attempts_allowed"]) == ("unknown", 1)
    assert production["rule"] is None


def test_every_category_has_an_answer(shipped: Policy) -> None:
    for category in CATEGORIES:
        resolved = shipped.resolve(category, **where())
        assert resolved.attempts_allowed >= 1


def test_without_import_only_the_given_name_is_matched() -> None:
    policy = parse_policy(
        textwrap.dedent(
            """\
            version = 1
            [categories.provider_unavailable]
            action = "retry"
            max_retries = 3
            [[rules]]
            category = "provider_unavailable"
            exception = ["builtins.OSError"]
            """
        )
    )
    imported = explain(policy, type_name="ConnectionResetError", **where())
    assert (imported["category"], imported["type_imported"]) == ("provider_unavailable", True)
    assert "builtins.OSError" in imported["types"]
    named = explain(policy, type_name="ConnectionResetError", import_type=False, **where())
    assert (named["category"], named["types"], named["type_imported"]) == (
        "unknown",
        ["ConnectionResetError"],
        False,
    )


def test_a_name_that_cannot_be_imported_is_matched_as_given(shipped: Policy) -> None:
    answer = explain(shipped, type_name="nosuchpackage.errors.TimeoutError", **where())
    assert (answer["category"], answer["type_imported"]) == ("timeout", False)


def test_exception_classes_are_found_by_module_path_or_builtin_name() -> None:
    import openai

    assert find_exception_class("openai.APITimeoutError") is openai.APITimeoutError
    assert find_exception_class("openai._exceptions.APITimeoutError") is openai.APITimeoutError
    assert find_exception_class("TimeoutError") is TimeoutError
    assert find_exception_class("builtins.KeyError") is KeyError
    assert find_exception_class("json.dumps") is None  # not an exception class
    assert find_exception_class("nosuch.Thing") is None


def test_explain_names_the_built_in_taxonomy_for_a_time_limit(shipped: Policy) -> None:
    answer = explain(
        shipped, type_name="dramatiq.middleware.time_limit.TimeLimitExceeded", **where()
    )
    assert (answer["category"], answer["rule"], answer["layer"]) == (
        "time_limit",
        "time_limit",
        "built-in",
    )


def test_explain_names_an_exception_that_carries_its_category_as_explicit(
    shipped: Policy,
) -> None:
    answer = explain(shipped, type_name="workers.evaluations.llm_judge.JudgeOutputError", **where())
    assert (answer["category"], answer["layer"]) == ("invalid_model_output", "explicit")
