"""The decision on a failed attempt: retry, dead-letter or drop, and the sentence it carries."""

from __future__ import annotations

import dataclasses

import pytest

from config.policy import ResolvedPolicy
from middleware.core.decisions import Decision, decide

RETRY = ResolvedPolicy(
    category="timeout", action="retry", max_retries=3, max_attempts=12, min_backoff_ms=1_000,
    max_backoff_ms=60_000, jitter=0.0, honor_retry_after=False, report=False,
)  # fmt: skip


def policy(**changes: object) -> ResolvedPolicy:
    return dataclasses.replace(RETRY, **changes)  # type: ignore[arg-type]


def decide_timeout(
    resolved: ResolvedPolicy = RETRY,
    *,
    attempt: int = 1,
    max_attempts: int = 12,
    retries: dict[str, int] | None = None,
    retry_after_s: float | None = None,
    forced_action: str | None = None,
) -> Decision:
    return decide(
        "timeout", resolved, attempt=attempt, max_attempts=max_attempts, retries=retries or {},
        retry_after_s=retry_after_s, forced_action=forced_action, rand=0.5,
    )  # fmt: skip


def test_a_first_failure_within_budget_is_retried_after_the_minimum_backoff() -> None:
    decision = decide_timeout()
    assert decision == Decision("retry", "timeout", 1_000, "timeout: retry 1 of 3", {"timeout": 1})


def test_each_retry_doubles_the_delay_and_counts_against_its_own_category() -> None:
    decision = decide_timeout(attempt=3, retries={"timeout": 2, "rate_limited": 5})
    assert (decision.action, decision.delay_ms) == ("retry", 4_000)
    assert decision.retries == {"timeout": 3, "rate_limited": 5}
    assert decision.reason == "timeout: retry 3 of 3"


def test_a_spent_budget_dead_letters_and_says_how_much_was_used() -> None:
    decision = decide_timeout(attempt=4, retries={"timeout": 3})
    assert (decision.action, decision.delay_ms) == ("dead_letter", None)
    assert decision.reason == "timeout: retry budget spent (3 of 3 retries used)"
    assert decision.retries == {"timeout": 3}


def test_a_category_without_retries_says_the_policy_allows_none() -> None:
    decision = decide_timeout(policy(max_retries=0))
    assert (decision.action, decision.reason) == (
        "dead_letter",
        "timeout: policy allows no retries",
    )


def test_max_attempts_caps_every_category_together() -> None:
    decision = decide_timeout(attempt=4, max_attempts=4, retries={"rate_limited": 3})
    assert decision.action == "dead_letter"
    assert decision.reason == "timeout: max_attempts reached (4 of 4)"


@pytest.mark.parametrize(("action", "words"), [("dead_letter", "dead-letters"), ("drop", "drops")])
def test_a_category_whose_policy_does_not_retry_ends_at_once(action: str, words: str) -> None:
    decision = decide_timeout(policy(action=action), retries={"timeout": 1})
    assert (decision.action, decision.delay_ms) == (action, None)
    assert decision.reason == f"timeout: policy {words} it"
    assert decision.retries == {"timeout": 1}


def test_an_action_the_exception_forces_wins_over_the_policy() -> None:
    assert decide_timeout(forced_action="dead_letter").action == "dead_letter"
    assert decide_timeout(policy(action="dead_letter"), forced_action="retry").action == "retry"


def test_a_retry_after_is_honoured_when_the_policy_says_so() -> None:
    assert decide_timeout(policy(honor_retry_after=True), retry_after_s=7.5).delay_ms == 7_500
    assert decide_timeout(retry_after_s=7.5).delay_ms == 1_000


def test_the_retry_counts_given_are_never_changed() -> None:
    given = {"timeout": 1}
    decide_timeout(retries=given)
    assert given == {"timeout": 1}
