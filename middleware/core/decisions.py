"""What to do with a failed attempt: the pure decision the error-policy middleware applies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from config.policy import Action, ResolvedPolicy
from middleware.core.backoff import retry_delay_ms


@dataclass(frozen=True)
class Decision:
    """The outcome of one failed attempt.

    ``retries`` is the job's per-category retry count after this decision (carried in the
    message options of the retry); ``reason`` is the sentence an operator reads in logs and in
    the dead-letter record.
    """

    action: Action
    category: str
    delay_ms: int | None
    reason: str
    retries: dict[str, int] = field(default_factory=dict)


def decide(
    category: str,
    policy: ResolvedPolicy,
    *,
    attempt: int,
    max_attempts: int,
    retries: Mapping[str, int],
    retry_after_s: float | None,
    forced_action: str | None,
    rand: float,
) -> Decision:
    """Retry, dead-letter or drop a job whose attempt number ``attempt`` failed with ``category``.

    A job failing with the same category every time runs ``min(max_retries + 1, max_attempts)``
    times: each category spends its own retry budget, and ``max_attempts`` caps them all.
    """
    counts = dict(retries)
    action = forced_action or policy.action
    if action == "drop":
        return Decision("drop", category, None, f"{category}: policy drops it", counts)
    if action != "retry":
        return Decision(
            "dead_letter", category, None, f"{category}: policy dead-letters it", counts
        )
    used = counts.get(category, 0)
    if used >= policy.max_retries:
        reason = (
            f"{category}: retry budget spent ({used} of {policy.max_retries} retries used)"
            if policy.max_retries
            else f"{category}: policy allows no retries"
        )
        return Decision("dead_letter", category, None, reason, counts)
    if attempt >= max_attempts:
        reason = f"{category}: max_attempts reached ({attempt} of {max_attempts})"
        return Decision("dead_letter", category, None, reason, counts)
    counts[category] = used + 1
    delay = retry_delay_ms(policy, used + 1, retry_after_s=retry_after_s, rand=rand)
    reason = f"{category}: retry {used + 1} of {policy.max_retries}"
    return Decision("retry", category, delay, reason, counts)
