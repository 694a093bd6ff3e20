"""Where an attempt stands when it starts: its numbers, the crashes before it, whether it may run.

Pure functions over the counter Redis returned and the options the message carries; the
error-policy middleware reads them and acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.policy import ResolvedPolicy

#: Message options the error policy carries between attempts.
OPTION_ATTEMPTS = "evalq_attempts"  # attempts that reached a decision
OPTION_RETRIES = "evalq_retries"  # retries spent, per category
OPTION_FIRST_FAILURE = "evalq_first_failure_at"
OPTION_ATTEMPT_BASE = "evalq_attempt_base"  # attempts a redriven job had before its redrive
OPTION_THROTTLED = "evalq_throttled"  # attempts turned back by evalq's own rate limits


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job, as numbered when it starts."""

    n: int  # counted over the job's whole life (redrives included): its timeline number
    budget_n: int  # since the last redrive, throttled ones excluded: what budgets compare
    started_at: int
    crashes: int  # attempts that died with their worker, since the last redrive
    lost: tuple[int, ...] = ()  # numbers of the attempts found dead when this one started


def begin(n: int, options: Mapping[str, Any], *, started_at: int) -> Attempt:
    """Attempt ``n`` (the counter's value) of a message carrying ``options``.

    Attempts between the last one that reached a decision and this one started but never
    finished: their worker died.
    """
    base = int(options.get(OPTION_ATTEMPT_BASE, 0))
    known = int(options.get(OPTION_ATTEMPTS, base))
    lost = tuple(range(known + 1, n))
    earlier_crashes = int((options.get(OPTION_RETRIES) or {}).get("crashed", 0))
    return Attempt(
        n=n,
        budget_n=n - base - int(options.get(OPTION_THROTTLED, 0)),
        started_at=started_at,
        crashes=earlier_crashes + len(lost),
        lost=lost,
    )


def refusal(attempt: Attempt, *, max_attempts: int, crashed: ResolvedPolicy) -> str | None:
    """Why ``attempt`` must not run (its job goes to the DLQ as ``crashed``), or None."""
    if attempt.budget_n > max_attempts:
        return (
            f"crashed: max_attempts reached ({attempt.budget_n - 1} started of {max_attempts}) "
            "before this attempt"
        )
    if not attempt.lost:
        return None
    budget = crashed.max_retries if crashed.action == "retry" else 0
    if attempt.crashes > budget:
        return f"crashed: {attempt.crashes} attempt(s) died with their worker (budget {budget})"
    return None


def expiry(age_ms: int, max_age_ms: int | None) -> str | None:
    """Why a job this old may not run any more, or None."""
    if not max_age_ms or age_ms <= max_age_ms:
        return None
    return f"expired: waited {age_ms / 1000:.1f}s, more than the {max_age_ms / 1000:.0f}s allowed"


def spent(options: Mapping[str, Any], attempt: Attempt) -> dict[str, int]:
    """Retries spent per category, with crashes counted under ``crashed``."""
    counts = {k: int(v) for k, v in (options.get(OPTION_RETRIES) or {}).items()}
    if attempt.crashes:
        counts["crashed"] = attempt.crashes
    return counts


#: First delay of a throttled job when the limit gives no hint, in milliseconds; it doubles with
#: each throttle of the same job (up to 16x), jittered up to 2x and capped at 5 s.
THROTTLE_DELAY_MS = 250


def throttle_delay_ms(times: int, retry_after_s: float | None, *, rand: float) -> int:
    """How long a job throttled ``times`` times before waits now: the limit's own hint if it
    gave one, else a doubling, jittered delay, so a long queue behind a small cap does not
    churn Redis."""
    if retry_after_s is not None:
        return int(retry_after_s * 1000)
    return min(int(THROTTLE_DELAY_MS * 2 ** min(times, 4) * (1 + rand)), 5000)
