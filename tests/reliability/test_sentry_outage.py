"""Sentry refusing connections, dropping them or stalling: workers run every job as usual and
still stop promptly; the unknown failures they would report are handled by policy all the same."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.reliability.chaos import QUICK_BACKOFF, Job, scaled, wait_until_settled
from tests.support.failing_actors import fail_unknown
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import rule_request
from tests.support.sentry_endpoint import SentryEndpoint
from workers import client

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

FAILING = scaled(6, 40)
GOOD = scaled(30, 300)


@pytest.fixture
def endpoint() -> Iterator[SentryEndpoint]:
    with SentryEndpoint() as server:
        yield server


@pytest.mark.parametrize("outage", ["refuse", "close", "stall"])
def test_workers_are_unaffected_by_a_sentry_outage(
    outage: str,
    worker_pools: WorkerPools,
    redis_client: redis.Redis,
    endpoint: SentryEndpoint,
    tmp_path: Path,
) -> None:
    if outage == "stall":
        endpoint.slow(30)
    else:
        endpoint.down(outage)  # type: ignore[arg-type]
    policy = write_test_policy(tmp_path / "policy.toml", QUICK_BACKOFF)
    env = {"SENTRY_DSN": endpoint.dsn, "EVALQ_POLICY_FILE": str(policy)}
    name = worker_pools.start(
        "default",
        "evaluations.live",
        threads=4,
        env=env,
        modules=("workers", "tests.support.failing_actors"),
    )
    began = time.monotonic()
    failing = [fail_unknown.send("shard", "from", f"job-{i}").message_id for i in range(FAILING)]
    good = [h.id for h in client.submit_many([rule_request() for _ in range(GOOD)], lane="live")]
    jobs = [Job(j, "", ("", "")) for j in failing + good]
    found = wait_until_settled(redis_client, jobs, timeout=30)
    took = time.monotonic() - began
    stop_began = time.monotonic()
    worker_pools.stop()
    stopped_in = time.monotonic() - stop_began
    print(
        f"\nSentry {outage}: {FAILING} unknown failures and {GOOD} good jobs settled in "
        f"{took:.1f} s; pool stopped in {stopped_in:.1f} s; {endpoint.requests} requests "
        f"reached the endpoint"
    )
    assert [found[j] for j in failing] == ["dead_lettered"] * FAILING
    assert [found[j] for j in good] == ["succeeded"] * GOOD
    assert worker_pools.group.poll()[name] is not None
    # Three attempts of unknown with 50-400 ms backoffs, nothing waiting on Sentry.
    assert took < 15
    assert stopped_in < 10
    # No worker thread died, no job was nacked for want of Sentry.
    assert "CRITICAL" not in worker_pools.log(name)
