"""A worker thread that dies is replaced and logged at CRITICAL, and its job is not lost; a job
another middleware skips ends visibly."""

from __future__ import annotations

import pytest
import redis

from middleware.state.jobs import History
from tests.support import hostile_middleware
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration


def runs(redis_client: redis.Redis, tag: str) -> int:
    return int(redis_client.llen(f"test:runs:{tag}"))


def test_a_pool_of_one_thread_keeps_working_after_its_thread_dies_three_ways(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    # One thread: without a replacement, nothing after the first death would ever run.
    pool = worker_pools.start("default", threads=1,
                              modules=("workers", "tests.support.hostile_middleware"))  # fmt: skip
    killed = ["after:1", "ack:1", "both:1"]
    jobs = {}
    for tag in killed:
        jobs[tag] = hostile_middleware.run_and_record.send(tag).message_id
        assert client.wait_all([jobs[tag]], timeout=30) == {jobs[tag]: "succeeded"}, (
            worker_pools.log(pool)
        )
    ordinary = [hostile_middleware.run_and_record.send(f"ok:{i}").message_id for i in range(5)]
    outcomes = client.wait_all(ordinary, timeout=30)
    worker_pools.stop()
    output = worker_pools.log(pool)

    assert set(outcomes.values()) == {"succeeded"}
    # Its outcome was written before the thread died: it ran once, and was acked for it.
    assert runs(redis_client, "ack:1") == 1
    # No outcome was written: it was put back and ran again, its first attempt counted crashed.
    for tag in ("after:1", "both:1"):
        assert runs(redis_client, tag) == 2
        outcomes_seen = [a["outcome"] for a in History(redis_client).attempts(jobs[tag])]
        assert outcomes_seen == ["crashed", "succeeded"], (tag, outcomes_seen)
    assert output.count("CRITICAL") >= 3 and output.count("died of") == 3, output
    assert output.count("replaced; 1 worker threads run") == 3, output
    assert "ThreadDeath" in output
    assert hostile_middleware.PLANTED_KEY not in output
    # Nothing is left held or queued.
    assert not [k for k in redis_client.scan_iter("dramatiq:__acks__.*") if redis_client.scard(k)]


def test_a_job_another_middleware_skips_ends_dropped_not_running(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    worker_pools.start("default", threads=2,
                       modules=("workers", "tests.support.hostile_middleware"))  # fmt: skip
    skipped = hostile_middleware.run_and_record.send("skip:1").message_id
    ran = hostile_middleware.run_and_record.send("ok:after-skip").message_id
    assert client.wait_all([skipped, ran], timeout=30) == {skipped: "dropped", ran: "succeeded"}
    assert runs(redis_client, "skip:1") == 0
    [attempt] = History(redis_client).attempts(skipped)
    assert attempt["outcome"] == "dropped"
    assert attempt["error_message"] == "skipped by a middleware before it ran"
