"""The embeddings metric and the comparison and custom judges through the real openai SDK
against the simulated provider, counted there; then through real ``dramatiq workers``, with the
error policy deciding what a 429 and an unknown model on the embeddings endpoint cost."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

import workers
from config.settings import Settings
from middleware.core.errors import Throttled
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import target_of
from workers import client
from workers.bootstrap import repoint
from workers.demo.provider import EMBEDDINGS_PATH, Reply, SimulatedProvider
from workers.evaluations.evaluate import evaluate
from workers.evaluations.llm_judge import JudgeOutputError, make_client
from workers.evaluations.models import EvaluationRequest, EvaluationResult

VERDICT_SCHEMA = {
    "type": "object",
    "$defs": {"grade": {"type": "integer", "minimum": 0, "maximum": 10}},
    "properties": {
        "score": {"$ref": "#/$defs/grade"},
        "on_topic": {"type": "boolean"},
        "reason": {"type": "string"},
    },
    "required": ["score", "on_topic", "reason"],
    "additionalProperties": False,
}


def payload(metric: str, config: dict[str, Any], **target: str) -> dict[str, Any]:
    return {
        "evaluation": {
            "uuid": str(uuid.uuid4()),
            "name": metric,
            "type": "llm",
            "metric": metric,
            "config": config,
        },
        "target": {
            "uuid": str(uuid.uuid4()),
            "input": "Where is the Eiffel Tower?",
            "actual_output": "The Eiffel Tower stands in Paris, France.",
            "expected_output": "It is in Paris.",
            **target,
        },
    }


def semantic(**config: Any) -> dict[str, Any]:
    return payload("semantic_similarity", {"model": "sim-embed", "threshold": 0.3, **config})


def comparison(output_mode: str = "json") -> dict[str, Any]:
    return payload("comparison", {"model": "sim-judge", "output_mode": output_mode})


def custom(output_mode: str = "json", **config: Any) -> dict[str, Any]:
    return payload(
        "custom",
        {
            "model": "sim-judge",
            "output_mode": output_mode,
            "prompt": "Question: {{input}}\nAnswer: {{actual_output}}\nGrade it from 0 to 10.",
            "schema": VERDICT_SCHEMA,
            "max_score": 10,
            "passed_field": "on_topic",
            **config,
        },
    )


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as provider:
        yield provider


def run(provider: SimulatedProvider, request: dict[str, Any]) -> EvaluationResult:
    settings = Settings(
        provider_base_url=provider.base_url, provider_api_key="sk-test", provider_timeout_s=2
    )
    sdk = make_client(settings)
    return evaluate(EvaluationRequest.model_validate(request), llm_client=lambda: sdk)


# --- semantic_similarity over HTTP ----------------------------------------------------------------


def test_semantic_similarity_makes_one_embeddings_request_for_both_texts(
    provider: SimulatedProvider,
) -> None:
    request = semantic()

    result = run(provider, request)

    (record,) = provider.requests_for(target_of(request))
    assert (record.path, record.status, record.model) == (EMBEDDINGS_PATH, 200, "sim-embed")
    assert 0.3 <= result.score <= 1 and result.has_passed
    assert result.metadata["dimensions"] == 64
    assert provider.count() == 1


def test_semantic_similarity_is_deterministic_and_higher_for_closer_texts(
    provider: SimulatedProvider,
) -> None:
    close = semantic()
    far = semantic(threshold=0.9)
    far["target"]["actual_output"] = "Stock markets fell sharply on Monday."

    first, again = run(provider, close), run(provider, copy.deepcopy(close))
    unrelated = run(provider, far)

    assert first.score == again.score
    assert unrelated.score < first.score
    assert not unrelated.has_passed


def test_semantic_similarity_passes_the_requested_dimensions(provider: SimulatedProvider) -> None:
    assert run(provider, semantic(dimensions=16)).metadata["dimensions"] == 16


def test_a_429_on_the_embeddings_endpoint_raises_rate_limit_error_after_one_request(
    provider: SimulatedProvider,
) -> None:
    request = semantic()
    provider.script(target_of(request), [Reply.rate_limited(retry_after_s=1)])

    with pytest.raises(openai.RateLimitError):
        run(provider, request)

    assert provider.count(target_of(request)) == 1


def test_an_unknown_embedding_model_raises_not_found_with_model_not_found(
    provider: SimulatedProvider,
) -> None:
    request = semantic(model="text-embedding-nope")
    provider.script(target_of(request), [Reply.model_not_found("text-embedding-nope")])

    with pytest.raises(openai.NotFoundError) as raised:
        run(provider, request)

    assert (raised.value.status_code, raised.value.code) == (404, "model_not_found")
    assert provider.count(target_of(request)) == 1


def test_an_embeddings_request_hanging_past_the_client_timeout_is_a_timeout_after_one_request(
    provider: SimulatedProvider,
) -> None:
    request = semantic()
    provider.script(target_of(request), [Reply.hang(10)])
    settings = Settings(
        provider_base_url=provider.base_url, provider_api_key="sk-test", provider_timeout_s=0.5
    )
    sdk = make_client(settings)

    with pytest.raises(openai.APITimeoutError):
        evaluate(EvaluationRequest.model_validate(request), llm_client=lambda: sdk)

    assert provider.count(target_of(request)) == 1


def test_the_embeddings_request_is_made_inside_the_providers_rate_limit_slot(
    provider: SimulatedProvider,
) -> None:
    request = semantic(provider="embed-prov")
    entered: list[tuple[str | None, int]] = []

    @contextlib.contextmanager
    def slot(name: str | None) -> Iterator[None]:
        entered.append((name, provider.count()))
        yield
        entered.append((name, provider.count()))

    sdk = make_client(Settings(provider_base_url=provider.base_url, provider_api_key="k"))
    evaluate(EvaluationRequest.model_validate(request), llm_client=lambda: sdk, slot=slot)

    assert entered == [("embed-prov", 0), ("embed-prov", 1)]  # held around the one request


def test_a_full_rate_limit_slot_throttles_before_any_embeddings_request(
    provider: SimulatedProvider,
) -> None:
    def full(name: str | None) -> contextlib.AbstractContextManager[None]:
        raise Throttled("embed-prov:max_concurrency=1", retry_after_s=0.2)

    sdk = make_client(Settings(provider_base_url=provider.base_url, provider_api_key="k"))
    with pytest.raises(Throttled):
        evaluate(EvaluationRequest.model_validate(semantic()), llm_client=lambda: sdk, slot=full)

    assert provider.count() == 0


def test_an_empty_output_scores_zero_without_a_provider_request(
    provider: SimulatedProvider,
) -> None:
    request = semantic()
    request["target"]["actual_output"] = "  "
    result = run(provider, request)
    assert (result.score, result.has_passed) == (0.0, False)
    assert provider.count() == 0


# --- comparison and custom judges over HTTP ------------------------------------------------------


@pytest.mark.parametrize("output_mode", ["json", "tools"])
def test_a_comparison_verdict_is_a_score_between_zero_and_one(
    provider: SimulatedProvider, output_mode: str
) -> None:
    request = comparison(output_mode)
    provider.script(target_of(request), [Reply.ok(passed=True)])

    result = run(provider, request)

    assert 0.6 <= result.score <= 1 and result.has_passed
    assert result.normalized_score == pytest.approx(100 * result.score)
    assert provider.requests_for(target_of(request))[0].tools_offered is (output_mode == "tools")


@pytest.mark.parametrize("output_mode", ["json", "tools"])
def test_a_custom_verdict_that_fits_the_users_schema_is_scored_on_its_range(
    provider: SimulatedProvider, output_mode: str
) -> None:
    request = custom(output_mode)
    provider.script(target_of(request), [Reply.ok(passed=False)])

    result = run(provider, request)

    assert result.has_passed is False  # decided by the on_topic field
    assert 0 <= result.score <= 4
    assert result.normalized_score == pytest.approx(result.score * 10)
    assert set(result.metadata["verdict"]) == {"score", "on_topic", "reason"}
    assert provider.count(target_of(request)) == 1


def test_a_custom_verdict_failing_the_users_schema_is_a_judge_output_error(
    provider: SimulatedProvider,
) -> None:
    request = custom()
    provider.script(
        target_of(request), [Reply.content('{"score": 11, "on_topic": true, "reason": "x"}')]
    )

    with pytest.raises(JudgeOutputError, match=r"\$\.score: 11 is greater than the maximum of 10"):
        run(provider, request)


def test_a_comparison_score_outside_zero_to_one_is_a_judge_output_error(
    provider: SimulatedProvider,
) -> None:
    request = comparison()
    provider.script(target_of(request), [Reply.content('{"score": 1.5, "reason": "same"}')])

    with pytest.raises(JudgeOutputError, match=r"score 1.5 is outside 0..1"):
        run(provider, request)


# --- through real workers, counted at the provider --------------------------------------------

TEST_POLICY = """
[environments.test.defaults]
min_backoff_ms = 50
max_backoff_ms = 2000

[environments.test.categories.rate_limited]
max_retries = 2
"""


@pytest.fixture(scope="module")
def pool(
    _redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SimulatedProvider, DeadLetters]]:
    store = redis.Redis.from_url(_redis_server)
    store.flushdb()
    repoint(workers.broker, _redis_server)
    tmp: Path = tmp_path_factory.mktemp("metrics")
    policy_file = write_test_policy(tmp / "policy.toml", TEST_POLICY)
    with SimulatedProvider() as provider:
        pools = WorkerPools(redis_url=_redis_server, log_dir=tmp / "logs")
        pools.start(
            "evaluations.batch",
            threads=4,
            env={
                "EVALQ_POLICY_FILE": str(policy_file),
                "EVALQ_PROVIDER_BASE_URL": provider.base_url,
                "EVALQ_PROVIDER_API_KEY": "sk-test-key",
                "EVALQ_PROVIDER_TIMEOUT_S": "2",
            },
        )
        try:
            yield provider, DeadLetters(store)
        finally:
            pools.stop()


@pytest.mark.integration
def test_workers_score_each_new_llm_metric_with_one_provider_request_each(
    pool: tuple[SimulatedProvider, DeadLetters],
) -> None:
    provider, _ = pool
    requests = [semantic(), comparison(), comparison("tools"), custom(), custom("tools")]
    handles = client.submit_many(requests, lane="batch")

    results = [handle.result(timeout=30) for handle in handles]

    assert all(r is not None for r in results)
    assert [provider.count(target_of(r)) for r in requests] == [1, 1, 1, 1, 1]
    assert provider.requests_for(target_of(requests[0]))[0].path == EMBEDDINGS_PATH


@pytest.mark.integration
def test_a_429_on_embeddings_is_rate_limited_retried_and_then_succeeds(
    pool: tuple[SimulatedProvider, DeadLetters],
) -> None:
    provider, dead_letters = pool
    request = semantic()
    provider.script(target_of(request), [Reply.rate_limited(retry_after_s=1), Reply.ok()])

    handle = client.submit_evaluation(request, lane="batch")
    result = handle.result(timeout=30)

    assert result is not None and result.metadata["metric"] == "semantic_similarity"
    records = provider.requests_for(target_of(request))
    assert [r.status for r in records] == [429, 200]
    assert records[1].started_at - records[0].ended_at >= 1.0  # Retry-After honoured
    timeline = History(dead_letters.client).show(handle.id)
    assert timeline is not None
    assert [a["outcome"] for a in timeline["attempts"]] == ["retried", "succeeded"]
    assert timeline["attempts"][0]["category"] == "rate_limited"


@pytest.mark.integration
def test_an_unknown_embedding_model_is_model_capability_and_dead_lettered_after_one_request(
    pool: tuple[SimulatedProvider, DeadLetters],
) -> None:
    provider, dead_letters = pool
    request = semantic(model="text-embedding-nope")
    provider.script(target_of(request), [Reply.model_not_found("text-embedding-nope")])

    handle = client.submit_evaluation(request, lane="batch")
    assert client.wait_all([handle.id], timeout=30)[handle.id] == "dead_lettered"

    assert provider.count(target_of(request)) == 1
    (record,) = [r for r in dead_letters.list(limit=100).records if r.job_id == handle.id]
    assert record.category == "model_capability"
    assert record.error_type == "openai.NotFoundError"


@pytest.mark.integration
def test_a_custom_verdict_failing_its_schema_is_invalid_model_output_in_workers(
    pool: tuple[SimulatedProvider, DeadLetters],
) -> None:
    provider, dead_letters = pool
    request = custom()
    provider.script(target_of(request), [Reply.content('{"score": 3, "reason": "no flag"}')])

    handle = client.submit_evaluation(request, lane="batch")
    assert client.wait_all([handle.id], timeout=30)[handle.id] == "dead_lettered"

    (record,) = [r for r in dead_letters.list(limit=100).records if r.job_id == handle.id]
    assert record.category == "invalid_model_output"
    assert "'on_topic' is a required property" in record.error_message
    # The shipped policy retries invalid_model_output twice: three requests in all.
    assert provider.count(target_of(request)) == 3
