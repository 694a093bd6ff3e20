from __future__ import annotations

from config.policy import ResolvedPolicy
from middleware.core.attempts import (
    OPTION_ATTEMPT_BASE,
    OPTION_ATTEMPTS,
    OPTION_RETRIES,
    OPTION_THROTTLED,
    begin,
    expiry,
    refusal,
    spent,
    throttle_delay_ms,
)

CRASHED = ResolvedPolicy(
    category="crashed", action="retry", max_retries=2, max_attempts=12, min_backoff_ms=1000,
    max_backoff_ms=300000, jitter=0.25, honor_retry_after=False, report=False,
)  # fmt: skip


def test_a_first_attempt_has_lost_nothing() -> None:
    attempt = begin(1, {}, started_at=0)
    assert (attempt.n, attempt.budget_n, attempt.crashes, attempt.lost) == (1, 1, 0, ())
    assert refusal(attempt, max_attempts=12, crashed=CRASHED) is None


def test_attempts_started_after_the_last_decision_died_with_their_worker() -> None:
    attempt = begin(4, {OPTION_ATTEMPTS: 1}, started_at=0)
    assert attempt.lost == (2, 3)
    assert attempt.crashes == 2
    assert spent({}, attempt) == {"crashed": 2}


def test_crashes_add_up_across_retries() -> None:
    attempt = begin(5, {OPTION_ATTEMPTS: 4, OPTION_RETRIES: {"crashed": 2, "timeout": 1}},
                    started_at=0)  # fmt: skip
    assert attempt.crashes == 2 and attempt.lost == ()
    attempt = begin(6, {OPTION_ATTEMPTS: 4, OPTION_RETRIES: {"crashed": 2}}, started_at=0)
    assert attempt.crashes == 3
    assert refusal(attempt, max_attempts=12, crashed=CRASHED) == (
        "crashed: 3 attempt(s) died with their worker (budget 2)"
    )


def test_a_redriven_job_counts_its_budget_from_the_redrive() -> None:
    attempt = begin(7, {OPTION_ATTEMPT_BASE: 6}, started_at=0)
    assert (attempt.n, attempt.budget_n, attempt.lost) == (7, 1, ())


def test_throttled_attempts_spend_no_budget() -> None:
    attempt = begin(5, {OPTION_ATTEMPTS: 4, OPTION_THROTTLED: 3}, started_at=0)
    assert attempt.budget_n == 2


def test_a_job_past_max_attempts_is_refused_before_it_runs() -> None:
    attempt = begin(5, {OPTION_ATTEMPTS: 4}, started_at=0)
    assert refusal(attempt, max_attempts=4, crashed=CRASHED) == (
        "crashed: max_attempts reached (4 started of 4) before this attempt"
    )


def test_expiry_needs_a_limit_and_an_older_job() -> None:
    assert expiry(10_000, None) is None
    assert expiry(10_000, 10_000) is None
    assert expiry(10_001, 10_000) == "expired: waited 10.0s, more than the 10s allowed"


def test_crashes_found_before_a_throttle_are_carried_through_it() -> None:
    first = begin(3, {OPTION_ATTEMPTS: 1}, started_at=0)  # attempt 2 died with its worker
    carried = {OPTION_ATTEMPTS: first.n, OPTION_RETRIES: spent({}, first), OPTION_THROTTLED: 1}
    after_throttle = begin(4, carried, started_at=0)
    assert after_throttle.crashes == 1 and after_throttle.lost == ()


def test_a_throttled_job_waits_longer_each_time_up_to_five_seconds() -> None:
    delays = [throttle_delay_ms(times, None, rand=0.0) for times in range(7)]
    assert delays == [250, 500, 1000, 2000, 4000, 4000, 4000]
    assert throttle_delay_ms(6, None, rand=0.99) == 5000
    assert throttle_delay_ms(3, 1.5, rand=0.5) == 1500
