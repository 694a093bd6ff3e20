"""Edges of the error policy with real worker processes: failures that are awkward to record."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.failing_actors import fail_unprintably
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from workers import client
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration

OVERRIDES = """
[environments.test.defaults]
min_backoff_ms = 20
max_backoff_ms = 200
[environments.test.categories.unknown]
max_retries = 0
"""


def test_an_exception_that_cannot_print_itself_still_reaches_the_dlq(
    worker_pools: WorkerPools, redis_client: redis.Redis, tmp_path: Path
) -> None:
    policy = write_test_policy(tmp_path / "policy.toml", OVERRIDES)
    worker_pools.start("default", env={"EVALQ_POLICY_FILE": str(policy)},
                       modules=("workers", "tests.support.failing_actors"))  # fmt: skip
    job = fail_unprintably.send().message_id
    assert client.wait_all([job], timeout=20)[job] == "dead_lettered"
    [record] = DeadLetters(redis_client).list().records
    assert (record.job_id, record.category) == (job, "unknown")
    assert record.error_message == "<unprintable Unprintable>"


def test_secrets_in_a_provider_error_never_reach_the_job_timeline(
    worker_pools: WorkerPools, redis_client: redis.Redis, tmp_path: Path
) -> None:
    policy = write_test_policy(tmp_path / "policy.toml", OVERRIDES)
    with SimulatedProvider() as provider:
        worker_pools.start("evaluations.batch", env={
            "EVALQ_POLICY_FILE": str(policy),
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": "sk-test-timeline-key",
        })  # fmt: skip
        request = llm_request()
        leak = "upstream rejected key sk-live-abcdefghijklmnop for https://bob:hunter2@proxy"
        provider.script(target_of(request), [Reply.error(500, leak), Reply.ok()])
        handle = client.submit_evaluation(request)
        handle.result(timeout=30)
    document = History(redis_client).show(handle.id)
    assert document is not None
    retried = document["attempts"][0]
    assert retried["outcome"] == "retried"
    stored = str(redis_client.hgetall(f"evalq:job:{handle.id}")) + str(document)
    assert "sk-live-abcdefghijklmnop" not in stored
    assert "hunter2" not in stored
    assert "[redacted]" in retried["error_message"]
