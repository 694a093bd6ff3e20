"""Provider rate limits, end to end: real `dramatiq workers`, the real openai SDK, a simulated
provider on 127.0.0.1 that measures how many requests it answers at once. Hitting our own cap
re-delays a job without spending its retry budget, and shows in the timeline and in metrics."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis

from config.settings import Settings
from middleware.core.errors import Throttled
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from workers import client
from workers.demo.provider import ChatRequest, Record, Reply, SimulatedProvider
from workers.rate_limits import RateLimits

pytestmark = pytest.mark.integration

BATCH = "evaluations.batch"

#: How long the simulated provider takes to answer, in seconds: long enough for requests to overlap.
REPLY_S = 0.4


def slow(request: ChatRequest) -> Reply:
    return Reply.slow(REPLY_S)


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(slow) as server:
        yield server


def provider_env(provider: SimulatedProvider, **limits: str) -> dict[str, str]:
    return {
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-test-not-logged",
        "EVALQ_PROVIDER_TIMEOUT_S": "5",
        **limits,
    }


def with_provider(request: dict[str, Any], name: str) -> dict[str, Any]:
    request["evaluation"]["config"]["provider"] = name
    return request


def timelines(redis_client: redis.Redis, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    shown = History(redis_client).show_many(job_ids)
    return {
        job_id: doc["attempts"] if doc else [] for job_id, doc in zip(job_ids, shown, strict=True)
    }


def outcomes(attempts: Iterable[list[dict[str, Any]]]) -> Counter[str]:
    return Counter(a["outcome"] for timeline in attempts for a in timeline)


def peak_in_flight(records: Iterable[Record]) -> int:
    """The most of these requests the provider was answering at the same moment."""
    events = []
    for record in records:
        assert record.ended_at is not None
        events += [(record.started_at, 1), (record.ended_at, -1)]
    peak = current = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts on a tie
        current += step
        peak = max(peak, current)
    return peak


def test_a_concurrency_cap_of_two_holds_eight_threads_to_two_requests_without_spending_retries(
    worker_pools: WorkerPools,
    provider: SimulatedProvider,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    worker_pools.start(
        BATCH, threads=8, env=provider_env(provider, EVALQ_PROVIDER_MAX_CONCURRENCY="2")
    )
    job_ids = [client.submit_evaluation(llm_request()).id for _ in range(12)]

    final = client.wait_all(job_ids, timeout=60)

    assert set(final.values()) == {"succeeded"}
    assert provider.count() == 12  # a throttled attempt never reaches the provider
    assert provider.max_in_flight == 2  # the cap is the limit, not the 8 threads
    history = timelines(redis_client, job_ids)
    counted = outcomes(history.values())
    assert counted["succeeded"] == 12
    assert counted["throttled"] > 0
    assert "retried" not in counted
    throttled = [a for t in history.values() for a in t if a["outcome"] == "throttled"]
    assert {a["category"] for a in throttled} == {"throttled"}
    assert {a["error_message"] for a in throttled} == {
        "rate limit 'default:max_concurrency=2' is full"
    }
    assert DeadLetters(redis_client).stats()["total"] == 0

    status = run_evalq("status", "--json", redis_url=redis_url)
    assert status.returncode == 0, status.stderr
    queues = json.loads(status.stdout)["queues"]
    assert queues[BATCH]["throttled"] == counted["throttled"]
    assert queues["evaluations.live"]["throttled"] == 0


def test_a_providers_own_cap_of_one_holds_only_that_provider(
    worker_pools: WorkerPools, provider: SimulatedProvider, redis_client: redis.Redis
) -> None:
    limits = json.dumps({"judge-prov": {"max_concurrency": 1}})
    worker_pools.start(BATCH, threads=8, env=provider_env(provider, EVALQ_PROVIDER_LIMITS=limits))
    requests = [
        with_provider(llm_request(), "judge-prov" if i % 2 == 0 else "other-prov")
        for i in range(12)
    ]
    job_ids = [client.submit_evaluation(request).id for request in requests]

    final = client.wait_all(job_ids, timeout=60)

    assert set(final.values()) == {"succeeded"}
    provider_of = {target_of(r): r["evaluation"]["config"]["provider"] for r in requests}
    records = provider.requests_for()
    assert len(records) == 12
    capped = peak_in_flight(r for r in records if provider_of[str(r.target)] == "judge-prov")
    uncapped = peak_in_flight(r for r in records if provider_of[str(r.target)] == "other-prov")
    assert capped == 1
    assert uncapped >= 3
    history = timelines(redis_client, job_ids)
    by_provider = {
        name: outcomes(
            history[job_id]
            for job_id, r in zip(job_ids, requests, strict=True)
            if r["evaluation"]["config"]["provider"] == name
        )
        for name in ("judge-prov", "other-prov")
    }
    assert by_provider["judge-prov"]["throttled"] > 0
    assert "throttled" not in by_provider["other-prov"]
    assert "retried" not in by_provider["judge-prov"] + by_provider["other-prov"]


def test_a_requests_per_minute_cap_lets_three_of_five_through_and_queues_the_rest(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    with SimulatedProvider() as fast:
        worker_pools.start(
            BATCH, threads=5, env=provider_env(fast, EVALQ_PROVIDER_REQUESTS_PER_MINUTE="3")
        )
        job_ids = [client.submit_evaluation(llm_request()).id for _ in range(5)]

        deadline = time.monotonic() + 20
        while True:
            states = client.states(job_ids)
            if sorted(map(str, states.values())) == ["queued"] * 2 + ["succeeded"] * 3:
                history = timelines(redis_client, job_ids)
                waiting = [j for j in job_ids if states[j] == "queued"]
                if all(history[j] for j in waiting):
                    break
            assert time.monotonic() < deadline, f"states: {states}"
            time.sleep(0.1)
        time.sleep(2)  # nothing else reaches the provider meanwhile

        assert fast.count() == 3
        assert client.states(waiting) == dict.fromkeys(waiting, "queued")
        history = timelines(redis_client, waiting)
        for job_id in waiting:
            # Turned back once, to come back when the window frees up (~a minute), not sooner.
            (attempt,) = history[job_id]
            assert attempt["outcome"] == "throttled"
            assert attempt["error_message"] == "rate limit 'default:requests_per_minute=3' is full"
        assert DeadLetters(redis_client).stats()["total"] == 0


def test_a_slot_held_by_a_dead_worker_comes_back_after_its_ttl_while_others_keep_working(
    redis_client: redis.Redis,
) -> None:
    settings = Settings(provider_max_concurrency=2, provider_limits={})
    ttl_ms = 1500
    dead = RateLimits(settings, redis_client, slot_ttl_ms=ttl_ms)
    held = dead.slot(None)
    held.__enter__()  # acquired, never released: its worker "died"
    limits = RateLimits(settings, redis_client, slot_ttl_ms=ttl_ms)
    started = time.monotonic()

    recovered_at = None
    uses = 0
    while recovered_at is None and time.monotonic() - started < 5:
        with limits.slot(None):  # the one slot left keeps serving requests
            uses += 1
            try:
                with limits.slot(None):
                    recovered_at = time.monotonic() - started
            except Throttled as throttled:
                assert throttled.limit == "default:max_concurrency=2"
                assert throttled.retry_after_s is not None and throttled.retry_after_s < 1
        time.sleep(0.05)

    assert recovered_at is not None, "the dead worker's slot never came back"
    assert ttl_ms / 1000 - 0.2 <= recovered_at <= ttl_ms / 1000 + 1
    assert uses > 10
    del held
