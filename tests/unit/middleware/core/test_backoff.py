from __future__ import annotations

import math

import pytest

from config.policy import ResolvedPolicy
from middleware.core.backoff import retry_delay_ms


def policy(
    *,
    min_backoff_ms: int = 1000,
    max_backoff_ms: int = 60_000,
    jitter: float = 0.0,
    honor_retry_after: bool = False,
) -> ResolvedPolicy:
    return ResolvedPolicy(
        category="provider_unavailable",
        action="retry",
        max_retries=5,
        max_attempts=12,
        min_backoff_ms=min_backoff_ms,
        max_backoff_ms=max_backoff_ms,
        jitter=jitter,
        honor_retry_after=honor_retry_after,
        report=False,
    )


def test_each_retry_doubles_the_delay_up_to_the_cap() -> None:
    delays = [retry_delay_ms(policy(), n, retry_after_s=None, rand=0.5) for n in range(1, 9)]
    assert delays == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]


def test_jitter_spreads_the_delay_between_one_minus_and_one_plus_jitter() -> None:
    jittery = policy(jitter=0.25)
    assert retry_delay_ms(jittery, 2, retry_after_s=None, rand=0.0) == 1500
    assert retry_delay_ms(jittery, 2, retry_after_s=None, rand=0.5) == 2000
    assert retry_delay_ms(jittery, 2, retry_after_s=None, rand=0.999999) == 2500


def test_jitter_never_pushes_the_delay_past_the_cap() -> None:
    jittery = policy(jitter=1.0, max_backoff_ms=5000)
    assert retry_delay_ms(jittery, 3, retry_after_s=None, rand=0.99) == 5000
    assert retry_delay_ms(jittery, 30, retry_after_s=None, rand=0.0) == 0


def test_a_retry_after_replaces_the_computed_delay_without_jitter() -> None:
    honoring = policy(jitter=0.5, honor_retry_after=True)
    assert retry_delay_ms(honoring, 1, retry_after_s=7, rand=0.0) == 7000
    assert retry_delay_ms(honoring, 6, retry_after_s=0.5, rand=0.9) == 500


def test_a_retry_after_is_rounded_up_to_the_millisecond() -> None:
    honoring = policy(honor_retry_after=True)
    assert retry_delay_ms(honoring, 1, retry_after_s=1.2341, rand=0.0) == 1235
    assert retry_delay_ms(honoring, 1, retry_after_s=0.1 * 3, rand=0.0) == 300  # float noise


def test_a_retry_after_is_capped_at_the_maximum_backoff() -> None:
    honoring = policy(honor_retry_after=True, max_backoff_ms=10_000)
    assert retry_delay_ms(honoring, 1, retry_after_s=3600, rand=0.0) == 10_000
    assert retry_delay_ms(honoring, 1, retry_after_s=1e308, rand=0.0) == 10_000
    assert retry_delay_ms(honoring, 1, retry_after_s=math.inf, rand=0.0) == 10_000


def test_a_retry_after_is_ignored_when_the_category_does_not_honour_it() -> None:
    assert retry_delay_ms(policy(), 1, retry_after_s=30, rand=0.0) == 1000


def test_a_nan_retry_after_falls_back_to_the_computed_delay() -> None:
    honoring = policy(honor_retry_after=True)
    assert retry_delay_ms(honoring, 2, retry_after_s=math.nan, rand=0.0) == 2000


def test_a_huge_retry_number_is_the_cap_without_big_arithmetic() -> None:
    assert retry_delay_ms(policy(), 10**12, retry_after_s=None, rand=0.3) == 60_000


def test_a_zero_minimum_backoff_retries_at_once() -> None:
    assert retry_delay_ms(policy(min_backoff_ms=0), 5, retry_after_s=None, rand=0.3) == 0


def test_retry_numbers_start_at_one_and_rand_lies_in_the_unit_interval() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        retry_delay_ms(policy(), 0, retry_after_s=None, rand=0.0)
    with pytest.raises(ValueError, match="rand"):
        retry_delay_ms(policy(), 1, retry_after_s=None, rand=1.5)
