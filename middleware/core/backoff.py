"""How long to wait before retrying a failed job: pure arithmetic, randomness passed in."""

from __future__ import annotations

import math

from config.policy import ResolvedPolicy


def retry_delay_ms(
    policy: ResolvedPolicy, retry_number: int, *, retry_after_s: float | None, rand: float
) -> int:
    """The delay before the ``retry_number``-th retry (1-based) of ``policy``'s category, in ms.

    Exponential: ``min_backoff_ms * 2**(retry_number - 1)`` capped at ``max_backoff_ms``, times
    the jitter factor ``1 - jitter + 2 * jitter * rand`` (``rand`` in [0, 1)), capped again. With
    ``honor_retry_after`` and a provider's Retry-After (seconds), that delay, rounded up to the
    millisecond, replaces the computed one, capped at ``max_backoff_ms`` and without jitter: a
    retry never comes sooner than the provider asked, unless the cap says so.
    """
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    if not 0.0 <= rand <= 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    cap = policy.max_backoff_ms
    if policy.honor_retry_after and retry_after_s is not None and not math.isnan(retry_after_s):
        if retry_after_s * 1000 >= cap:
            return cap
        # round() first: 0.1 * 3 seconds is 300 ms, not 301.
        return max(0, math.ceil(round(retry_after_s * 1000, 6)))
    base = policy.min_backoff_ms
    doublings = retry_number - 1
    # Past this many doublings any positive base is over the cap; 2**n is never computed big.
    if base <= 0:
        delay = 0
    elif doublings > cap.bit_length():
        delay = cap
    else:
        delay = min(cap, base << doublings)
    factor = 1.0 - policy.jitter + 2.0 * policy.jitter * rand
    return min(cap, round(delay * factor))
