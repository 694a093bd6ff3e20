"""evalq's own Redis failing is not the provider's fault: no second provider request for an
answer already given, and the failure has a category of its own."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

import workers
from middleware.state.jobs import History
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from tests.support.tcp_proxy import TcpProxy
from workers import client
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration


def test_a_redis_outage_during_the_result_write_makes_no_second_provider_request(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    plain = urlsplit(redis_url)
    assert plain.hostname and plain.port
    request = llm_request()
    with SimulatedProvider() as provider, TcpProxy((plain.hostname, plain.port)) as proxy:
        # The worker reaches Redis through the proxy; this test talks to Redis directly.
        pools = WorkerPools(redis_url=proxy.url, log_dir=tmp_path / "logs")
        try:
            pools.start("evaluations.batch", env={
                "EVALQ_PROVIDER_BASE_URL": provider.base_url,
                "EVALQ_STORE_PATIENCE_S": "15",
            })  # fmt: skip
            provider.script(target_of(request), [Reply.slow(1.0)])
            handle = client.submit_evaluation(request)
            deadline = time.monotonic() + 20
            while not provider.requests_for(target_of(request)):
                assert time.monotonic() < deadline, "the job never reached the provider"
                time.sleep(0.01)
            # Redis goes away while the provider is answering, for longer than the answer takes.
            proxy.cut(3.0)
            result = handle.result(timeout=30)
        finally:
            pools.stop()
    assert result is not None
    assert len(provider.requests_for(target_of(request))) == 1
    document = History(redis_client).show(handle.id)
    assert document is not None
    assert [a["outcome"] for a in document["attempts"]] == ["succeeded"]
    assert "result of" in pools.log("pool1")  # it waited for Redis, and said so


def test_a_redis_error_is_store_unavailable_not_a_provider_failure() -> None:
    from middleware.core.classify import classify

    wrapped = RuntimeError("could not record the outcome")
    wrapped.__cause__ = redis.exceptions.ConnectionError("Error 111 connecting to redis:6379")
    classification = classify(wrapped, workers.policy, now=time.time())
    assert (classification.category, classification.rule) == (
        "store_unavailable",
        "redis_unavailable",
    )
    assert (
        workers.policy.resolve(
            "store_unavailable", actor="run_batch_evaluation", queue="evaluations.batch", env="test"
        ).action
        == "retry"
    )
