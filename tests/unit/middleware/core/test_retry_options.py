"""Dramatiq's retry options mapped onto the policy: pure, with the shipped policy file."""

from __future__ import annotations

import pytest

from config.policy import Policy, load_policy
from middleware.core.classify import classify
from middleware.core.decisions import Decision
from middleware.core.retry_options import (
    InvalidRetryOption,
    RetryOptions,
    expected_failure,
    requested_retry,
    second_opinion,
)
from tests.support.policy import SHIPPED_POLICY


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(SHIPPED_POLICY)


def resolve(policy: Policy, category: str):  # type: ignore[no-untyped-def]
    return policy.resolve(category, actor="some_actor", queue="default", env="production")


def test_message_options_win_over_actor_options() -> None:
    options = RetryOptions.read({"max_retries": 0}, {"max_retries": 3}, where="job j")
    assert options.max_retries == 0


def test_throws_and_retry_when_are_read_from_the_actor_only() -> None:
    def never(retries: int, exception: BaseException) -> bool:
        return False

    options = RetryOptions.read(
        {"throws": "KeyError", "retry_when": "x"},
        {"throws": KeyError, "retry_when": never},
        where="job j",
    )
    assert options.throws == (KeyError,)
    assert options.retry_when is never


def test_max_retries_caps_a_retried_category_and_never_raises_it(policy: Policy) -> None:
    rate_limited = resolve(policy, "rate_limited")  # shipped: 10 retries
    assert RetryOptions(max_retries=3).apply(rate_limited).max_retries == 3
    timeout = resolve(policy, "timeout")  # shipped: 2 retries
    assert RetryOptions(max_retries=5).apply(timeout).max_retries == 2


def test_max_retries_override_replaces_the_budget_but_max_attempts_still_caps(
    policy: Policy,
) -> None:
    timeout = RetryOptions(max_retries=30, override=True).apply(resolve(policy, "timeout"))
    assert timeout.max_retries == 30
    assert timeout.attempts_allowed == timeout.max_attempts == 12


def test_a_dead_lettered_category_stays_dead_lettered_whatever_max_retries_says(
    policy: Policy,
) -> None:
    capability = resolve(policy, "model_capability")
    applied = RetryOptions(max_retries=5, override=True).apply(capability)
    assert (applied.action, applied.attempts_allowed) == ("dead_letter", 1)


def test_backoff_options_replace_the_bounds_and_max_wins_when_they_cross(policy: Policy) -> None:
    rate_limited = resolve(policy, "rate_limited")
    applied = RetryOptions(min_backoff_ms=50, max_backoff_ms=900).apply(rate_limited)
    assert (applied.min_backoff_ms, applied.max_backoff_ms) == (50, 900)
    crossed = RetryOptions(max_backoff_ms=100).apply(rate_limited)  # shipped min is 2000
    assert (crossed.min_backoff_ms, crossed.max_backoff_ms) == (100, 100)


def test_no_options_leave_the_policy_as_it_is(policy: Policy) -> None:
    unknown = resolve(policy, "unknown")
    assert RetryOptions().apply(unknown) is unknown
    assert not RetryOptions().changes_policy


@pytest.mark.parametrize(
    ("message_options", "actor_options", "complaint"),
    [
        ({"max_retries": -1}, {}, "job j: max_retries must be a whole number >= 0, got -1"),
        ({"max_retries": True}, {}, "max_retries must be a whole number"),
        ({"min_backoff": 1.5}, {}, "min_backoff must be a whole number"),
        ({"max_retries_override": "yes"}, {}, "max_retries_override must be true or false"),
        ({}, {"throws": (KeyError, "ValueError")}, "throws must be an exception class"),
        ({}, {"retry_when": 3}, "retry_when must be a function"),
    ],
)
def test_an_option_of_the_wrong_shape_is_refused_by_name(
    message_options: dict[str, object], actor_options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidRetryOption, match=complaint.replace("(", r"\(")):
        RetryOptions.read(message_options, actor_options, where="job j")


def test_a_thrown_exception_matches_anywhere_in_the_chain() -> None:
    options = RetryOptions(throws=(KeyError,))
    try:
        try:
            raise KeyError("row")
        except KeyError as error:
            raise RuntimeError("lookup failed") from error
    except RuntimeError as wrapper:
        assert options.thrown([wrapper, wrapper.__cause__])  # type: ignore[list-item]
    assert not options.thrown([ValueError("x")])
    assert not RetryOptions().thrown([KeyError("x")])


def test_an_expected_failure_no_rule_knows_is_an_invalid_request_dead_letter(
    policy: Policy,
) -> None:
    thrown = expected_failure(classify(KeyError("row 7"), policy, now=0.0))
    assert (thrown.category, thrown.rule, thrown.forced_action) == (
        "invalid_request",
        "actor option throws",
        "dead_letter",
    )


def test_an_expected_failure_a_rule_knows_keeps_its_category(policy: Policy) -> None:
    error = TimeoutError("read timed out")
    classified = classify(error, policy, now=0.0)
    thrown = expected_failure(classified)
    assert (thrown.category, thrown.rule) == (classified.category, classified.rule)
    assert thrown.forced_action == "dead_letter"


def test_a_requested_retry_carries_its_delay_as_the_wait_asked_for(policy: Policy) -> None:
    import dramatiq

    base = classify(dramatiq.Retry("later", delay=1500), policy, now=0.0)
    retry = requested_retry(base, delay_ms=1500)
    assert (retry.category, retry.rule, retry.retry_after_s) == (
        "retry_requested",
        "dramatiq.Retry",
        1.5,
    )
    assert requested_retry(base, delay_ms=None).retry_after_s is None


def test_retry_when_can_turn_a_retry_into_a_dead_letter_and_nothing_else() -> None:
    seen: list[tuple[int, BaseException]] = []

    def decline(retries: int, exception: BaseException) -> bool:
        seen.append((retries, exception))
        return False

    error = ValueError("x")
    retry = Decision("retry", "timeout", 100, "timeout: retry 2 of 2", {"timeout": 2})
    decided, broken = second_opinion(
        RetryOptions(retry_when=decline), retry, retries=1, exception=error
    )
    assert broken is None
    assert (decided.action, decided.category, decided.retries) == (
        "dead_letter",
        "timeout",
        {"timeout": 1},
    )
    assert decided.reason == "timeout: retry_when declined retry 2 (after 1 retries)"
    assert seen == [(1, error)]
    dead = Decision("dead_letter", "auth", None, "auth: policy dead-letters it")

    def accept(retries: int, exception: BaseException) -> bool:
        return True

    assert second_opinion(RetryOptions(retry_when=accept), dead, retries=0, exception=error) == (
        dead,
        None,
    )


def test_a_retry_when_that_raises_leaves_the_policys_decision_standing() -> None:
    def broken(retries: int, exception: BaseException) -> bool:
        raise ZeroDivisionError("bug in the predicate")

    retry = Decision("retry", "timeout", 100, "timeout: retry 1 of 2", {"timeout": 1})
    decided, error = second_opinion(
        RetryOptions(retry_when=broken), retry, retries=0, exception=ValueError("x")
    )
    assert decided is retry
    assert isinstance(error, ZeroDivisionError)


def test_describe_names_every_option_in_force() -> None:
    options = RetryOptions(max_retries=1, min_backoff_ms=5, throws=(KeyError,))
    assert options.describe() == [
        "max_retries=1 (caps every retried category)",
        "min_backoff=5 ms",
        "throws=(builtins.KeyError) dead-lettered at once",
    ]
