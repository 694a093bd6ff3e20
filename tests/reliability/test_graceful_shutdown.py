"""SIGTERM to a pool with jobs in flight: they finish where they run, the rest wait in the queue
for the next pool, and the provider sees each request exactly once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from middleware.state.jobs import History
from tests.reliability.chaos import (
    BATCH,
    LIVE,
    Job,
    LanePools,
    scaled,
    states,
    tally,
    wait_until_settled,
)
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request
from workers import client
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

JOBS = scaled(24, 120)
SIGTERMS = scaled(1, 4)


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(lambda request: Reply.slow(1.0)) as server:
        yield server


def requests_in_flight(
    provider: SimulatedProvider, jobs: list[Job], queue: str, *, timeout: float
) -> list[Job]:
    """Wait until the pool of ``queue`` has at least two requests at the provider, unanswered;
    the jobs they belong to. (A job merely recorded as running may still be starting up.)"""
    targets = {f"{j.pair[0]}/{j.pair[1]}": j for j in jobs if j.queue == queue}
    deadline = time.monotonic() + timeout
    while True:
        waiting = [
            targets[r.target]
            for r in provider.requests_for()
            if r.status is None and r.target in targets
        ]
        if len(waiting) >= 2 or time.monotonic() > deadline:
            return waiting
        time.sleep(0.02)


def test_sigterm_lets_jobs_in_flight_finish_and_asks_the_provider_once_per_job(
    worker_pools: WorkerPools,
    redis_client: redis.Redis,
    provider: SimulatedProvider,
    quick_policy: Path,
) -> None:
    env = {
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-reliability-not-a-real-key",
        "EVALQ_PROVIDER_TIMEOUT_S": "5",
        "EVALQ_POLICY_FILE": str(quick_policy),
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

    in_flight_at_term: list[int] = []
    for n in range(SIGTERMS):
        queue = (LIVE, BATCH)[n % 2]
        running = requests_in_flight(provider, jobs, queue, timeout=20)
        in_flight_at_term.append(len(running))
        name = lanes.names[queue]
        proc_pid = worker_pools.group.pids()[name]
        os.kill(proc_pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while worker_pools.group.poll()[name] is None:
            assert time.monotonic() < deadline, "the pool did not stop within its shutdown timeout"
            time.sleep(0.05)
        # Every job that was running when SIGTERM came has finished in the stopped pool.
        after = states(redis_client, [j.id for j in jobs])
        unfinished = [j for j in running if after[j.id] == "running"]
        assert unfinished == [], (
            f"{len(unfinished)} job(s) still running after their pool stopped: "
            f"{History(redis_client).show_many([j.id for j in unfinished])}; provider saw "
            f"{[provider.requests_for(f'{j.pair[0]}/{j.pair[1]}') for j in unfinished]}; "
            f"log:\n{worker_pools.log(name)}"
        )
        lanes.start(queue)

    wait_until_settled(redis_client, jobs, timeout=60)
    result = tally(redis_client, jobs, allowed={LIVE: 1, BATCH: 1})
    per_job = {provider.count(f"{j.pair[0]}/{j.pair[1]}") for j in jobs}
    print(
        f"\nSIGTERM x{SIGTERMS} with {in_flight_at_term} jobs in flight: {result.summary()}; "
        f"provider requests {provider.count()} for {JOBS} jobs"
    )
    assert all(count >= 2 for count in in_flight_at_term)
    assert result.succeeded == JOBS
    assert result.crashed_attempts == 0
    assert per_job == {1}
    assert provider.count() == JOBS
