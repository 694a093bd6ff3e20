"""A killed worker's jobs run again promptly, at the head of their queue."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import redis

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
