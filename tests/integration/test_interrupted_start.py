"""Time limits around an attempt: one running out while the attempt is being counted (Redis away)
puts the job back, unrun, instead of acking it; one running out while a success is written is
not the job's failure."""

from __future__ import annotations

import pytest
import redis

from middleware.state.jobs import History
from tests.support import slow_finish, slow_start
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


def test_a_success_whose_outcome_waits_past_the_time_limit_stays_a_success(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    pool = worker_pools.start("default", threads=1,
                              modules=("workers", "tests.support.slow_finish"))  # fmt: skip
    job = slow_finish.finish_slowly.send("slow-finish:1").message_id

    assert client.wait_all([job], timeout=30) == {job: "succeeded"}, worker_pools.log(pool)
    worker_pools.stop()
    # The actor returned within its limit: the wait for its outcome is not its failure.
    assert int(redis_client.llen("test:runs:slow-finish:1")) == 1, worker_pools.log(pool)
    assert [a["outcome"] for a in History(redis_client).attempts(job)] == ["succeeded"]
