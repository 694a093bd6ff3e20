"""Time limits and lane age limits with real worker processes."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.pools import WorkerPools
from tests.support.requests import rule_request
from tests.support.slow_actors import RUNS_KEY, overrun
from tests.support.worker_start import evalq_lines, run_dramatiq_workers
from workers import client
from workers.results import RESULT_KEY_PREFIX

pytestmark = pytest.mark.integration


def test_a_job_running_past_its_time_limit_ends_as_time_limit_after_its_allowed_attempts(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    worker_pools.start("default", threads=1, modules=("workers", "tests.support.slow_actors"))
    tag = str(uuid.uuid4())
    job = overrun.send(30, tag).message_id
    started = time.monotonic()
    assert client.wait_all([job], timeout=30)[job] == "dead_lettered"
    elapsed = time.monotonic() - started
    [record] = [r for r in DeadLetters(redis_client).list().records if r.job_id == job]
    assert record.category == "time_limit"
    # The shipped policy retries time_limit once: two attempts, each cut short.
    assert int(redis_client.hget(RUNS_KEY, tag) or 0) == 2
    assert [a["outcome"] for a in record.attempts] == ["retried", "dead_lettered"]
    assert elapsed < 15, elapsed


def test_a_job_older_than_its_lane_allows_is_expired_without_running(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    handle = client.submit_evaluation(rule_request(), lane="live")
    time.sleep(1.5)
    worker_pools.start("evaluations.live", env={"EVALQ_LIVE_MAX_AGE_S": "1"})
    assert client.wait_all([handle.id], timeout=20)[handle.id] == "dead_lettered"
    [record] = DeadLetters(redis_client).list().records
    assert (record.job_id, record.category) == (handle.id, "expired")
    assert "expired: waited" in (record.reason or "")
    assert record.attempts == []
    assert list(redis_client.scan_iter(f"{RESULT_KEY_PREFIX}*")) == []
    document = History(redis_client).show(handle.id)
    assert document is not None and document["attempts"] == []


def test_a_young_job_on_the_same_lane_runs(worker_pools: WorkerPools) -> None:
    worker_pools.start("evaluations.live", env={"EVALQ_LIVE_MAX_AGE_S": "60"})
    handle = client.submit_evaluation(rule_request(), lane="live")
    assert handle.result(timeout=20).has_passed


def test_a_provider_timeout_longer_than_a_time_limit_is_refused_at_start(redis_url: str) -> None:
    completed = run_dramatiq_workers(
        {"EVALQ_PROVIDER_TIMEOUT_S": "30", "EVALQ_TIME_LIMITS": '{"run_live_evaluation": 20}'},
        redis_url=redis_url,
    )
    assert completed.returncode == 2
    assert evalq_lines(completed) == [
        "evalq: invalid settings: EVALQ_PROVIDER_TIMEOUT_S (30 s) must be shorter than the time "
        "limit of run_live_evaluation (20 s; EVALQ_TIME_LIMIT_S / EVALQ_TIME_LIMITS)"
    ]
