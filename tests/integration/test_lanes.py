"""Lanes: each queue has its own worker pool, so a batch backlog never delays live work."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.cli import EVALQ, evalq_env, run_evalq, wait_for_file
from tests.support.pools import WorkerPools
from tests.support.requests import rule_request
from workers import client

pytestmark = pytest.mark.integration

BACKLOG = 5_000
LIVE_DEADLINE_S = 2.0


def test_a_live_evaluation_completes_within_two_seconds_behind_5000_queued_batch_jobs(
    worker_pools: WorkerPools, redis_client: redis.Redis, record_property: Any
) -> None:
    worker_pools.start("evaluations.batch", threads=8)
    # Dramatiq's default idle polling (up to 1 s between polls), as `evalq up` runs the pool;
    # the live pool has been idle the whole time, so it polls at that slowest rate.
    worker_pools.start("evaluations.live", threads=2, env={"dramatiq_worker_timeout": "1000"})
    batch = client.submit_many([rule_request() for _ in range(BACKLOG)], lane="batch")
    assert not any(handle.deduplicated for handle in batch)
    # The batch pool is busy working through the backlog before the live job arrives.
    deadline = time.monotonic() + 10
    while redis_client.llen("dramatiq:evaluations.batch") > BACKLOG - 100:
        assert time.monotonic() < deadline, "the batch pool never started on the backlog"
        time.sleep(0.01)

    submitted = time.monotonic()
    live = client.submit_evaluation(rule_request(), lane="live")
    live.result(timeout=10, poll_s=0.005)
    latency_s = time.monotonic() - submitted
    backlog_left = redis_client.llen("dramatiq:evaluations.batch")

    record_property("live_latency_s", round(latency_s, 3))
    record_property("batch_backlog_left", backlog_left)
    print(f"live latency {latency_s:.3f} s with {backlog_left} batch jobs still queued")
    assert latency_s < LIVE_DEADLINE_S
    # The live job did not win by the batch lane having drained first: batch work was still
    # waiting when it finished (a tenth of the backlog leaves room for a busy machine).
    assert backlog_left > BACKLOG // 10


def pools_by_queue(cwd: Path, expected_workers: int, timeout: float = 30.0) -> dict[str, list[int]]:
    """Threads of each registered worker process, by the queues it consumes."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_evalq("status", "--json", redis_url=None, cwd=cwd)
        assert status.returncode == 0, status.stderr
        workers = json.loads(status.stdout)["workers"]
        if len(workers) >= expected_workers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    pools: dict[str, list[int]] = {}
    for worker in workers:
        pools.setdefault(",".join(worker["queues"]), []).append(worker["threads"])
    return {queue: sorted(threads) for queue, threads in sorted(pools.items())}


def test_evalq_up_sizes_each_lane_pool_from_its_settings(tmp_path: Path) -> None:
    sizes = {
        "EVALQ_LIVE_PROCESSES": "1",
        "EVALQ_LIVE_THREADS": "3",
        "EVALQ_BATCH_PROCESSES": "2",
        "EVALQ_BATCH_THREADS": "5",
        "EVALQ_DEFAULT_PROCESSES": "1",
        "EVALQ_DEFAULT_THREADS": "1",
    }
    up = subprocess.Popen(
        [EVALQ, "up"],
        cwd=tmp_path,
        env=evalq_env(None, **sizes),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_file(tmp_path / ".evalq" / "up.json", up)
        assert pools_by_queue(tmp_path, expected_workers=4) == {
            "default": [1],
            "evaluations.batch": [5, 5],
            "evaluations.live": [3],
        }
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    announced = " ".join(output.split())  # rich wraps long lines
    assert "evaluations.live (1x3)" in announced
    assert "evaluations.batch (2x5)" in announced
