"""Which deduplication a submission asks for, and the arguments that do not fit together."""

from __future__ import annotations

import math

import pytest

from workers.deduplication import Dedup, DedupError, resolve_dedup


def test_without_arguments_a_submission_dedups_until_its_job_has_finished() -> None:
    assert resolve_dedup(None, None) == Dedup("until_finished", None)


def test_the_configured_mode_and_window_are_the_defaults_of_a_submission() -> None:
    assert resolve_dedup(None, None, default_mode="window", default_window_s=30) == Dedup(
        "window", 30.0
    )
    assert resolve_dedup("window", None, default_window_s=30) == Dedup("window", 30.0)
    assert resolve_dedup("window", 5, default_window_s=30) == Dedup("window", 5.0)


def test_a_configured_window_does_not_leak_into_another_mode() -> None:
    chosen = resolve_dedup("until_started", None, default_mode="window", default_window_s=30)
    assert chosen == Dedup("until_started", None)


def test_an_unknown_mode_is_refused_with_the_modes_there_are() -> None:
    with pytest.raises(DedupError, match="one of until_finished, until_started, window, not 'x'"):
        resolve_dedup("x", None)


def test_window_mode_without_a_window_says_where_to_give_one() -> None:
    with pytest.raises(DedupError, match=r"needs a window in seconds.*--dedup-window"):
        resolve_dedup("window", None)


@pytest.mark.parametrize("window", [0, -1, math.nan, math.inf])
def test_window_mode_needs_a_positive_finite_window(window: float) -> None:
    with pytest.raises(DedupError, match="positive number of seconds"):
        resolve_dedup("window", window)


@pytest.mark.parametrize("mode", ["until_finished", "until_started"])
def test_a_window_given_with_another_mode_is_refused(mode: str) -> None:
    with pytest.raises(DedupError, match=f"only applies to dedup mode window, not to {mode}"):
        resolve_dedup(mode, 10)


def test_a_window_cannot_outlast_the_job_records_it_is_measured_from() -> None:
    with pytest.raises(DedupError, match=r"cannot be longer than EVALQ_JOB_TTL_S \(3600 s\)"):
        resolve_dedup("window", 3601, max_window_s=3600)
    assert resolve_dedup("window", 3600, max_window_s=3600).window_s == 3600


def test_the_window_is_rounded_up_to_whole_milliseconds() -> None:
    assert Dedup("window", 0.0001).window_ms == 1
    assert Dedup("window", 2.5).window_ms == 2500
    assert Dedup("until_finished").window_ms == 0
