"""The provider answers 503 for a while, then recovers: every job is retried and succeeds, and
the provider counts no more requests per job than the policy allows attempts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from middleware.state import keys
from tests.reliability.chaos import BATCH, LIVE, Job, LanePools, scaled, tally, wait_until_settled
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request
from workers import client
from workers.demo.provider import ChatRequest, Reply, SimulatedProvider

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

JOBS = scaled(30, 200)
OUTAGE_S = scaled(0.8, 0.8)
#: provider_unavailable backs off 200, 400, 800, 1000... ms (±25%): even the live lane's three
#: retries (max_attempts 4) outlast the outage.
OUTAGE_POLICY = """
[environments.test.categories.provider_unavailable]
min_backoff_ms = 200
max_backoff_ms = 1000
"""
#: Attempts one job may have: live max_attempts 4; batch 6 retries of provider_unavailable.
ALLOWED = {LIVE: 4, BATCH: 7}


class Outage:
    """503 Service Unavailable to every request for ``seconds`` from the first one, then ok."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until: float | None = None
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> Reply:
        with self._lock:
            now = time.monotonic()
            if self.until is None:
                self.until = now + self.seconds
            down = now < self.until
            self.refused += down
        if down:
            return Reply.error(503, "The service is temporarily unavailable.")
        return Reply.ok()


@pytest.fixture
def outage() -> Outage:
    return Outage(OUTAGE_S)


@pytest.fixture
def provider(outage: Outage) -> Iterator[SimulatedProvider]:
    with SimulatedProvider(outage) as server:
        yield server


def test_jobs_ride_out_a_provider_outage_within_their_retry_budgets(
    worker_pools: WorkerPools,
    redis_client: redis.Redis,
    provider: SimulatedProvider,
    outage: Outage,
    tmp_path: Path,
) -> None:
    policy = write_test_policy(tmp_path / "policy.toml", OUTAGE_POLICY)
    env = {
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-reliability-not-a-real-key",
        "EVALQ_PROVIDER_TIMEOUT_S": "5",
        "EVALQ_POLICY_FILE": str(policy),
    }
    lanes = LanePools(worker_pools, env=env, processes={LIVE: 1, BATCH: 1}, threads=4)
    lanes.start_all()
    requests = [llm_request() for _ in range(JOBS)]
    handles = [
        *client.submit_many(requests[::2], lane="live"),
        *client.submit_many(requests[1::2], lane="batch"),
    ]
    ordered = [*requests[::2], *requests[1::2]]
    jobs = [
        Job(
            h.id,
            LIVE if i < len(requests[::2]) else BATCH,
            (r["evaluation"]["uuid"], r["target"]["uuid"]),
        )
        for i, (h, r) in enumerate(zip(handles, ordered, strict=True))
    ]

    wait_until_settled(redis_client, jobs, timeout=60)
    result = tally(redis_client, jobs, allowed=ALLOWED)
    asked = {j.id: provider.count(f"{j.pair[0]}/{j.pair[1]}") for j in jobs}
    started = {j.id: int(redis_client.hlen(keys.attempts_key(j.id))) for j in jobs}
    print(
        f"\nprovider outage of {OUTAGE_S} s: {result.summary()}; {outage.refused} requests "
        f"refused, {provider.count()} in all for {JOBS} jobs, at most {max(asked.values())} "
        f"per job"
    )
    assert result.succeeded == JOBS
    # The outage hit every worker thread (8) at least once; those jobs were retried.
    assert sum(count > 1 for count in asked.values()) >= 8, "the outage must have hit the jobs"
    assert result.attempts_over_budget == []
    # One request per attempt: no hidden client retries, and no job beyond its budget.
    assert asked == started
    assert all(asked[j.id] <= ALLOWED[j.queue] for j in jobs)
