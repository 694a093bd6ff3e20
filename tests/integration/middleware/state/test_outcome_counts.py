"""Outcome counts: summed in the process, written as a few increments per flush."""

from __future__ import annotations

import pytest
import redis

from middleware.state import keys
from middleware.state.jobs import History

pytestmark = pytest.mark.integration


def test_many_outcomes_in_one_flush_are_counted_exactly_with_one_increment_per_field(
    redis_client: redis.Redis,
) -> None:
    # A worker's history: buffered, flushed by its flusher (here: only when asked).
    history = History(redis_client, flush_interval_s=3600)
    history.start()
    minute = 29_000_000
    for _ in range(250):
        history.count_outcome("succeeded", None, at_ms=minute * 60_000 + 5)
    for _ in range(7):
        history.count_outcome("failed", "rate_limited", at_ms=minute * 60_000 + 59_999)
    history.count_outcome("failed", "rate_limited", at_ms=(minute + 1) * 60_000)
    before = redis_client.info("commandstats").get("cmdstat_hincrby", {}).get("calls", 0)
    history.flush()
    after = redis_client.info("commandstats")["cmdstat_hincrby"]["calls"]
    history.stop()

    assert redis_client.hgetall(keys.outcomes_minute_key(minute)) == {
        b"succeeded:": b"250",
        b"failed:rate_limited": b"7",
    }
    assert redis_client.hgetall(keys.outcomes_minute_key(minute + 1)) == {
        b"failed:rate_limited": b"1"
    }
    assert redis_client.hgetall(keys.OUTCOMES_TOTAL_KEY) == {
        b"succeeded:": b"250",
        b"failed:rate_limited": b"8",
    }
    assert redis_client.ttl(keys.outcomes_minute_key(minute)) > 0
    # Three minute fields and two totals: five increments for 258 outcomes.
    assert after - before == 5
