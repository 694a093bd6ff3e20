"""A killed worker's jobs run again promptly, at the head of their queue."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import redis

from middleware.redelivery import ORPHAN_AGE_S
from middleware.state import keys
from tests.support import plain_actors
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT_MS = 2000
ENV = {
    "EVALQ_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_TIMEOUT_MS),
    "EVALQ_REDELIVERY_INTERVAL_MS": "500",
    "EVALQ_MAINTENANCE_CHANCE": "0",  # only evalq's redelivery puts messages back
}
MODULES = ("workers", "tests.support.plain_actors")


def test_a_killed_workers_job_runs_again_within_the_heartbeat_timeout_ahead_of_the_backlog(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    first = worker_pools.start("default", threads=1, env=ENV, modules=MODULES)
    victim = plain_actors.sleep_then_count.send("victim", 30).message_id
    deadline = time.monotonic() + 20
    while not redis_client.llen("test:runs:victim:started"):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    backlog = [plain_actors.sleep_then_count.send(f"b{i}", 0.1).message_id for i in range(100)]
    for child in psutil.Process(worker_pools.group.pids()[first]).children(recursive=True):
        os.kill(child.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    worker_pools.start("default", threads=1, env=ENV, modules=MODULES)

    while redis_client.llen("test:runs:victim:started") < 2:
        assert time.monotonic() - killed_at < 15, "the killed worker's job never came back"
        time.sleep(0.02)
    recovered_s = time.monotonic() - killed_at
    backlog_done = sum(redis_client.llen(f"test:runs:b{i}") for i in range(100))
    print(f"redelivered {recovered_s:.2f} s after the kill, {backlog_done} backlog jobs done")
    # Heartbeat timeout + one interval + the new pool's start-up, and not behind the backlog.
    assert recovered_s < HEARTBEAT_TIMEOUT_MS / 1000 + 0.5 + 4
    assert backlog_done < 60
    assert client.JobHandle(victim).state() == "running"
    assert len(backlog) == 100


def _worker_ids(client: redis.Redis) -> list[str]:
    return [keys.text(member) for member in client.zrange(keys.heartbeats_key(), 0, -1)]


def test_a_delivery_a_live_worker_holds_in_redis_but_not_in_memory_runs_again(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    pool = worker_pools.start("default", threads=2, env=ENV, modules=MODULES)
    deadline = time.monotonic() + 10
    while not _worker_ids(redis_client):
        assert time.monotonic() < deadline, "the worker never beat its heart"
        time.sleep(0.05)
    (worker,) = _worker_ids(redis_client)
    # What a fetch whose reply was lost leaves behind: the delivery moved into the worker's
    # acks set in Redis, the message never in its memory.
    message = plain_actors.count_run.message("orphan").copy(options={"redis_message_id": "d-1"})
    redis_client.hset(keys.queue_messages_key("default"), "d-1", message.encode())
    redis_client.sadd(keys.acks_key(worker, "default"), "d-1")
    orphaned_at = time.monotonic()
    while not redis_client.llen("test:runs:orphan"):
        assert time.monotonic() - orphaned_at < 20, worker_pools.log(pool)
        time.sleep(0.05)
    waited = time.monotonic() - orphaned_at
    print(f"\nan orphaned delivery ran {waited:.1f} s after it was left in the acks set")
    assert ORPHAN_AGE_S <= waited < ORPHAN_AGE_S + 5
    assert "held by this worker in Redis but not in its memory" in worker_pools.log(pool)
    # Acked by its outcome, which the worker writes just after the actor returns.
    while redis_client.scard(keys.acks_key(worker, "default")):
        assert time.monotonic() - orphaned_at < 25, worker_pools.log(pool)
        time.sleep(0.05)


def test_jobs_held_in_memory_longer_than_the_orphan_age_are_never_put_back(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    pool = worker_pools.start("default", threads=1, env=ENV, modules=MODULES)
    # One thread: the third job waits in the worker's memory for two runs of 3.5 s each.
    for tag in ("held-1", "held-2", "held-3"):
        plain_actors.sleep_then_count.send(tag, 3.5)
    deadline = time.monotonic() + 30
    while not redis_client.llen("test:runs:held-3"):
        assert time.monotonic() < deadline, worker_pools.log(pool)
        time.sleep(0.1)
    time.sleep(1.0)
    assert [redis_client.llen(f"test:runs:held-{i}:started") for i in (1, 2, 3)] == [1, 1, 1]
    assert "not in its memory" not in worker_pools.log(pool)
