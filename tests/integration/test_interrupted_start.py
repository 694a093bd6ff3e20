"""A job whose time limit runs out while its attempt is being counted (Redis away) never ran: it
goes back on its queue and runs, instead of being acked and lost."""

from __future__ import annotations

import pytest
import redis

from middleware.state.jobs import History
from tests.support import slow_start
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration


def test_a_job_interrupted_while_its_attempt_is_counted_runs_later(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    pool = worker_pools.start("default", threads=1,
                              modules=("workers", "tests.support.slow_start"))  # fmt: skip
    job = slow_start.record_once.send("slow:1").message_id

    assert client.wait_all([job], timeout=30) == {job: "succeeded"}, worker_pools.log(pool)
    worker_pools.stop()
    output = worker_pools.log(pool)
    assert "interrupted (TimeLimitExceeded) before it ran" in output, output
    assert int(redis_client.llen("test:runs:slow:1")) == 1
    # The interrupted start never reached Redis: the one attempt is the one that ran.
    assert [a["outcome"] for a in History(redis_client).attempts(job)] == ["succeeded"]
    assert not [k for k in redis_client.scan_iter("dramatiq:__acks__.*") if redis_client.scard(k)]
