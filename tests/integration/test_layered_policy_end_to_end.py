"""A user's policy file with one tweak keeps the shipped taxonomy and budgets: real workers,
the simulated provider over HTTP, attempts counted at the provider."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from middleware.state.dead_letters import DeadLetters
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from tests.support.slow_actors import RUNS_KEY, overrun
from workers import client
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration

# Only version = 1 and one tweak (a short backoff for 5xx, so the test is quick): everything
# else, rules and budgets, comes from the shipped layer.
USER_FILE = """\
version = 1
[environments.test.categories.provider_unavailable]
max_backoff_ms = 100
"""


def test_one_tweak_keeps_every_shipped_category_and_budget(
    worker_pools: WorkerPools, redis_client: redis.Redis, tmp_path: Path
) -> None:
    policy = tmp_path / "mine.toml"
    policy.write_text(USER_FILE)
    with SimulatedProvider() as provider:
        env = {"EVALQ_POLICY_FILE": str(policy), "EVALQ_PROVIDER_BASE_URL": provider.base_url,
               "EVALQ_PROVIDER_API_KEY": "sk-test", "EVALQ_PROVIDER_TIMEOUT_S": "2"}  # fmt: skip
        worker_pools.start("evaluations.batch", "default", threads=4, env=env,
                           modules=("workers", "tests.support.slow_actors"))  # fmt: skip
        cases = {
            "capability": ([Reply.tools_not_supported()], "model_capability", 1),
            "judge_garbage": ([Reply.content("this is not JSON {")], "invalid_model_output", 3),
            # The shipped actor override: run_batch_evaluation retries 5xx 6 times.
            "server_errors": ([Reply.server_error()], "provider_unavailable", 7),
        }
        jobs = {}
        for name, (replies, _, _) in cases.items():
            request = llm_request()
            provider.script(target_of(request), replies)
            jobs[name] = (request, client.submit_evaluation(request).id)
        tag = str(uuid.uuid4())
        limited = overrun.send(30, tag).message_id
        ids = [job_id for _, job_id in jobs.values()] + [limited]
        final = client.wait_all(ids, timeout=60)
        assert set(final.values()) == {"dead_lettered"}, final
        records = {r.job_id: r for r in DeadLetters(redis_client).list(limit=50).records}
        for name, (_, category, expected_requests) in cases.items():
            request, job_id = jobs[name]
            assert records[job_id].category == category, name
            assert len(provider.requests_for(target_of(request))) == expected_requests, name
    assert records[limited].category == "time_limit"
    assert int(redis_client.hget(RUNS_KEY, tag) or 0) == 2  # the shipped time_limit budget


def test_with_extends_none_and_no_rules_evalqs_own_failures_keep_their_categories(
    worker_pools: WorkerPools, redis_client: redis.Redis, tmp_path: Path
) -> None:
    policy = tmp_path / "bare.toml"
    policy.write_text('version = 1\nextends = "none"\n')
    with SimulatedProvider() as provider:
        env = {"EVALQ_POLICY_FILE": str(policy), "EVALQ_PROVIDER_BASE_URL": provider.base_url,
               "EVALQ_PROVIDER_API_KEY": "sk-test", "EVALQ_PROVIDER_TIMEOUT_S": "2"}  # fmt: skip
        worker_pools.start("evaluations.batch", "default", threads=4, env=env,
                           modules=("workers", "tests.support.slow_actors"))  # fmt: skip
        garbage = llm_request()
        provider.script(target_of(garbage), [Reply.content("this is not JSON {")])
        judged = client.submit_evaluation(garbage).id
        from workers.actors import run_batch_evaluation

        invalid = run_batch_evaluation.send({"evaluation": {"uuid": "nope"}}).message_id
        limited = overrun.send(30, str(uuid.uuid4())).message_id
        final = client.wait_all([judged, invalid, limited], timeout=60)
        assert set(final.values()) == {"dead_lettered"}, final
        assert len(provider.requests_for(target_of(garbage))) == 1  # no file: no retries
    records = {r.job_id: r for r in DeadLetters(redis_client).list(limit=50).records}
    assert records[judged].category == "invalid_model_output"
    assert records[invalid].category == "invalid_payload"
    assert records[limited].category == "time_limit"
