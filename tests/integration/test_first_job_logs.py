"""A fresh worker process redacts the logs of its very first jobs.

Dramatiq 2.2 starts the worker threads before it emits ``after_worker_boot``, so whatever evalq
installs in that hook (the filter that replaces Dramatiq's own failure log, with its raw
traceback, by evalq's redacted decision line) may come too late for jobs already waiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.support.failing_actors import LEAKED_KEY, fail_quoting_a_key
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration

OVERRIDES = """
[environments.test.categories.unknown]
max_retries = 0
"""
JOBS = 4


def test_the_first_jobs_of_a_fresh_worker_never_log_a_secret(
    worker_pools: WorkerPools, redis_client: redis.Redis, tmp_path: Path
) -> None:
    policy = write_test_policy(tmp_path / "policy.toml", OVERRIDES)
    # Queued before the worker exists: its threads take them the moment they start.
    jobs = [fail_quoting_a_key.send().message_id for _ in range(JOBS)]
    pool = worker_pools.start("default", threads=JOBS, env={"EVALQ_POLICY_FILE": str(policy)},
                              modules=("workers", "tests.support.failing_actors",
                                       "tests.support.slow_worker_boot"))  # fmt: skip
    outcomes = client.wait_all(jobs, timeout=30)
    worker_pools.stop()
    output = worker_pools.log(pool)
    assert set(outcomes.values()) == {"dead_lettered"}
    # The failures were logged (redacted), so the absence of the key below means something.
    assert all(job in output for job in jobs), output
    assert LEAKED_KEY not in output
