"""Redis restarted (append-only persistence) while evaluations run: nothing is lost.

Workers keep their connections' retries; a settlement that meets a Redis that is down waits for
it, so every job ends, after the restart, in a terminal state with its result."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

import workers
from tests.reliability.chaos import (
    BATCH,
    FAST_RECOVERY,
    LIVE,
    Job,
    LanePools,
    Tally,
    scaled,
    tally,
    wait_until_settled,
)
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, rule_request
from workers import client
from workers.bootstrap import repoint
from workers.demo.provider import ChatRequest, Reply, SimulatedProvider
from workers.embedded_redis import EmbeddedRedis, _free_port

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

JOBS = scaled(80, 400)
RESTARTS = scaled(1, 3)
DOWN_S = scaled(1.5, 3.0)
ALLOWED = {LIVE: 4, BATCH: 12}


def slowish(request: ChatRequest) -> Reply:
    digest = hashlib.sha256((request.target or "").encode()).digest()
    return Reply.slow(0.2 + digest[0] / 255 * 0.4)


@dataclass
class Run:
    tally: Tally
    provider_requests: int
    llm_jobs: int
    extra_requests: int
    retried_provider_unavailable: int


@pytest.fixture(scope="module")
def run(_redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("redis-restart")
    policy = tmp / "policy.toml"
    from tests.reliability.chaos import QUICK_BACKOFF
    from tests.support.policy import write_test_policy

    write_test_policy(policy, QUICK_BACKOFF)
    server = EmbeddedRedis(tmp / "redis", persist=True, port=_free_port())
    with server, SimulatedProvider(slowish) as provider:
        url = server.url
        repoint(workers.broker, url)
        redis_client = redis.Redis.from_url(url)
        pools = WorkerPools(redis_url=url, log_dir=tmp / "logs")
        env = {
            **FAST_RECOVERY,
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": "sk-reliability-not-a-real-key",
            "EVALQ_PROVIDER_TIMEOUT_S": "5",
            "EVALQ_POLICY_FILE": str(policy),
        }
        try:
            lanes = LanePools(pools, env=env, processes={LIVE: 1, BATCH: 1}, threads=4)
            lanes.start_all()
            requests = [llm_request() if i % 2 else rule_request() for i in range(JOBS)]
            live = client.submit_many(requests[: JOBS // 3], lane="live")
            batch = client.submit_many(requests[JOBS // 3 :], lane="batch")
            jobs = [
                Job(
                    h.id,
                    LIVE if i < len(live) else BATCH,
                    (r["evaluation"]["uuid"], r["target"]["uuid"]),
                )
                for i, (h, r) in enumerate(zip([*live, *batch], requests, strict=True))
            ]
            for n in range(1, RESTARTS + 1):
                wait_for_progress(redis_client, jobs, n / (RESTARTS + 1))
                server.stop()
                time.sleep(DOWN_S)
                server.start()
                assert server.url == url
            wait_until_settled(redis_client, jobs, timeout=120)
            result = tally(redis_client, jobs, allowed=ALLOWED)
            llm = [
                j for j, r in zip(jobs, requests, strict=True) if r["evaluation"]["type"] == "llm"
            ]
            extra = sum(max(provider.count(f"{j.pair[0]}/{j.pair[1]}") - 1, 0) for j in llm)
            retried = count_retries(redis_client, jobs, "provider_unavailable")
            print(
                f"\nRedis restart x{RESTARTS} ({DOWN_S} s down each): {result.summary()}; "
                f"provider requests {provider.count()} for {len(llm)} LLM jobs "
                f"({extra} repeated), {retried} retries charged to provider_unavailable"
            )
            yield Run(result, provider.count(), len(llm), extra, retried)
        finally:
            pools.stop()
            repoint(workers.broker, _redis_server)


def wait_for_progress(redis_client: redis.Redis, jobs: list[Job], fraction: float) -> None:
    """Wait until ``fraction`` of the jobs finished: the outage lands mid-run."""
    from tests.reliability.chaos import states

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = states(redis_client, [job.id for job in jobs])
        if sum(s == "succeeded" for s in found.values()) >= fraction * len(jobs):
            return
        time.sleep(0.05)
    raise AssertionError("the jobs made no progress")


def count_retries(redis_client: redis.Redis, jobs: list[Job], category: str) -> int:
    from middleware.state.jobs import History

    documents = History(redis_client).show_many([job.id for job in jobs])
    return sum(
        1
        for document in documents
        for attempt in (document or {}).get("attempts", [])
        if attempt.get("outcome") == "retried" and attempt.get("category") == category
    )


def test_a_redis_restart_with_append_only_persistence_loses_no_job(run: Run) -> None:
    assert run.tally.lost == []
    assert run.tally.stuck_running == []
    assert run.tally.unfinished_held == []
    assert run.tally.succeeded == JOBS
    assert run.tally.missing_results == []
    assert run.tally.duplicated_results == 0
    assert run.tally.attempts_over_budget == []


def test_a_redis_outage_is_not_charged_to_the_provider(run: Run) -> None:
    assert run.retried_provider_unavailable == 0
    assert run.extra_requests == 0
