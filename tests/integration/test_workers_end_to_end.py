"""Application code submits evaluations; real `dramatiq workers` processes run them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from middleware.state.jobs import History
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, rule_request, target_of
from workers import actors, client
from workers.demo.provider import Reply, SimulatedProvider
from workers.requests_file import describe_validation_error
from workers.results import RESULT_KEY_PREFIX

pytestmark = pytest.mark.integration


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as server:
        yield server


def provider_env(provider: SimulatedProvider, tmp_path: Path) -> dict[str, str]:
    return {
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-test-not-logged",
        "EVALQ_PROVIDER_TIMEOUT_S": "2",
        "EVALQ_EXPORT_DIR": str(tmp_path / "exports"),
    }


def result_keys(redis_client: redis.Redis) -> list[bytes]:
    return list(redis_client.scan_iter(f"{RESULT_KEY_PREFIX}*"))


def test_a_rule_evaluation_submitted_from_python_is_scored_by_a_worker(
    worker_pools: WorkerPools,
) -> None:
    worker_pools.start("evaluations.live")
    handle = client.submit_evaluation(rule_request(pattern=r"w\w+"), lane="live")
    result = handle.result(timeout=20)
    assert result.has_passed is True
    assert result.normalized_score == 100
    assert handle.state() == "succeeded"


def test_an_llm_evaluation_makes_exactly_one_provider_request(
    worker_pools: WorkerPools, provider: SimulatedProvider, tmp_path: Path
) -> None:
    worker_pools.start("evaluations.batch", env=provider_env(provider, tmp_path))
    request = llm_request()
    result = client.submit_evaluation(request).result(timeout=20)
    assert result.metadata["model"] == "judge-small"
    assert result.metadata["total_tokens"] > 0
    assert provider.count(target_of(request)) == 1
    assert provider.count() == 1


def test_each_attempt_makes_one_provider_request_with_no_hidden_client_retries(
    worker_pools: WorkerPools, provider: SimulatedProvider, tmp_path: Path
) -> None:
    worker_pools.start("evaluations.batch", env=provider_env(provider, tmp_path))
    request = llm_request()
    provider.script(target_of(request), [Reply.server_error(), Reply.ok()])
    handle = client.submit_evaluation(request)
    handle.result(timeout=30)
    # One failed attempt and one successful one: two requests, never more.
    assert provider.count(target_of(request)) == 2
    document = History(redis.Redis.from_url(worker_pools.redis_url)).show(handle.id)
    assert document is not None
    assert [a["outcome"] for a in document["attempts"]] == ["retried", "succeeded"]


def test_submitting_the_same_request_twice_runs_one_job_and_keeps_one_result(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    request = rule_request()
    first = client.submit_evaluation(request, lane="live")
    second = client.submit_evaluation(request, lane="live")
    assert (second.id, second.deduplicated) == (first.id, True)
    worker_pools.start("evaluations.live")
    first.result(timeout=20)
    # Once finished, the same request runs again, and its result replaces the first one.
    third = client.submit_evaluation(request, lane="live")
    assert third.id != first.id and not third.deduplicated
    third.result(timeout=20)
    assert len(result_keys(redis_client)) == 1


def test_a_duplicate_delivery_overwrites_the_result_instead_of_adding_one(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    request = rule_request()
    worker_pools.start("evaluations.batch")
    # The same payload delivered twice, as at-least-once delivery may do.
    messages = [actors.run_batch_evaluation.send(request) for _ in range(2)]
    assert client.wait_all([m.message_id for m in messages], timeout=20) == {
        m.message_id: "succeeded" for m in messages
    }
    assert len(result_keys(redis_client)) == 1


def test_a_pool_on_the_batch_queue_never_takes_live_work(worker_pools: WorkerPools) -> None:
    worker_pools.start("evaluations.batch")
    live = client.submit_evaluation(rule_request(), lane="live")
    batch = client.submit_evaluation(rule_request(), lane="batch")
    batch.result(timeout=20)
    time.sleep(0.5)
    assert live.state() == "queued"
    worker_pools.start("evaluations.live")
    live.result(timeout=20)


def test_a_bad_payload_fails_its_job_and_the_worker_keeps_working(
    worker_pools: WorkerPools,
) -> None:
    name = worker_pools.start("evaluations.live", threads=1)
    bad = actors.run_live_evaluation.send({"evaluation": {"uuid": "nope"}})
    good = client.submit_evaluation(rule_request(), lane="live")
    assert good.result(timeout=20).has_passed
    info = client.JobHandle(bad.message_id).info()
    assert info["state"] == "dead_lettered"
    assert info["category"] == "invalid_payload"
    assert info["error_type"].endswith("ValidationError")
    assert worker_pools.group.poll()[name] is None


def test_export_results_runs_on_the_default_queue_and_writes_jsonl(
    worker_pools: WorkerPools, tmp_path: Path
) -> None:
    worker_pools.start(env={"EVALQ_EXPORT_DIR": str(tmp_path / "exports")})
    first = rule_request()
    second = {**rule_request(output="nothing to see"), "evaluation": first["evaluation"]}
    handles = client.submit_many([first, second])
    for handle in handles:
        handle.result(timeout=20)
    export = actors.export_results.send(first["evaluation"]["uuid"])
    assert export.queue_name == "default"
    assert client.wait_all([export.message_id], timeout=20)[export.message_id] == "succeeded"
    lines = (tmp_path / "exports" / f"{first['evaluation']['uuid']}.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["has_passed"] for line in lines) == [False, True]


def test_submit_many_validates_everything_before_enqueueing_anything(
    redis_client: redis.Redis,
) -> None:
    good = rule_request()
    bad = rule_request()
    bad["evaluation"]["config"] = {"pattern": "(unclosed"}
    with pytest.raises(ValidationError) as caught:
        client.submit_many([good, bad])
    assert describe_validation_error(caught.value).startswith(
        "1: evaluation.config.pattern: not a valid regular expression"
    )
    assert redis_client.llen("dramatiq:evaluations.batch") == 0
    assert list(redis_client.scan_iter("evalq:*")) == []
