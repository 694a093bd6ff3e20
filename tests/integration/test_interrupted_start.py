"""Time limits around an attempt: one running out while the attempt is being counted (Redis away)
puts the job back, unrun, instead of acking it; one running out while a success is written is
not the job's failure."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from middleware.state.jobs import History
from tests.support import slow_settlement
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration


def _run_one(worker_pools: WorkerPools, actor: Any, tag: str) -> tuple[str, str]:
    """Run one job of ``actor`` on a one-thread pool to its end; its id and the pool's output."""
    pool = worker_pools.start("default", threads=1,
                              modules=("workers", "tests.support.slow_settlement"))  # fmt: skip
    job = actor.send(tag).message_id
    assert client.wait_all([job], timeout=30) == {job: "succeeded"}, worker_pools.log(pool)
    worker_pools.stop()
    # The slow step did wait: the time limit had its chance to land there.
    assert client.default_client().redis.hexists(slow_settlement.WAITED_KEY, job)
    return job, worker_pools.log(pool)


def test_a_job_interrupted_while_its_attempt_is_counted_runs_later(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    job, output = _run_one(worker_pools, slow_settlement.start_slowly, "slow-start:1")

    assert "interrupted (TimeLimitExceeded) before it ran" in output, output
    assert int(redis_client.llen("test:runs:slow-start:1")) == 1
    # The interrupted start never reached Redis: the one attempt is the one that ran.
    assert [a["outcome"] for a in History(redis_client).attempts(job)] == ["succeeded"]
    assert not [k for k in redis_client.scan_iter("dramatiq:__acks__.*") if redis_client.scard(k)]


def test_a_success_whose_outcome_waits_past_the_time_limit_stays_a_success(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    job, output = _run_one(worker_pools, slow_settlement.finish_slowly, "slow-finish:1")

    # The actor returned within its limit: the wait for its outcome is not its failure.
    assert int(redis_client.llen("test:runs:slow-finish:1")) == 1, output
    assert [a["outcome"] for a in History(redis_client).attempts(job)] == ["succeeded"]
