"""The start script tells a new attempt who started the job last, so that an attempt whose
worker died is recorded with that worker."""

from __future__ import annotations

import pytest
import redis

from middleware.state.jobs import History

pytestmark = pytest.mark.integration


def test_a_start_returns_the_worker_and_time_of_the_previous_start(redis_url: str) -> None:
    history = History(redis.Redis.from_url(redis_url))
    first = history.start_attempt(
        "job-1", queue="default", actor="export_results", running_until=2**40, worker="host-a:1"
    )
    assert (first.n, first.previous_worker, first.previous_started_at) == (1, None, None)
    second = history.start_attempt(
        "job-1", queue="default", actor="export_results", running_until=2**40, worker="host-b:2"
    )
    assert (second.n, second.aborted, second.previous_worker) == (2, False, "host-a:1")
    assert second.previous_started_at is not None and second.previous_started_at > 0
