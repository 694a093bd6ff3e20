"""A job that kills its worker spends its own crash budget, and no one else's."""

from __future__ import annotations

import time

import pytest
import redis

from middleware.state.dead_letters import DeadLetters
from tests.support import crashing_actors
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration

# A dead worker's jobs come back quickly: its heartbeat times out after 2.5 s and every broker
# command also looks for dead workers.
FAST_RECOVERY = {"EVALQ_HEARTBEAT_TIMEOUT_MS": "2500", "EVALQ_MAINTENANCE_CHANCE": "1000000"}


def test_only_the_poison_job_is_dead_lettered_as_crashed_when_innocent_jobs_died_beside_it(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    innocent = [crashing_actors.maybe_kill_worker.send(f"innocent-{i}").message_id
                for i in range(3)]  # fmt: skip
    poison = crashing_actors.maybe_kill_worker.send(crashing_actors.POISON).message_id
    jobs = [*innocent, poison]
    deadline = time.monotonic() + 90
    restarts = 0
    while True:
        states = {job: client.JobHandle(job).state() for job in jobs}
        if all(state in ("succeeded", "dead_lettered") for state in states.values()):
            break
        assert time.monotonic() < deadline, f"jobs still unfinished: {states}"
        if not any(code is None for code in worker_pools.group.poll().values()):
            # Every pool died (the poison killed it): start another, as a supervisor would.
            restarts += 1
            worker_pools.start("default", threads=4, env=FAST_RECOVERY,
                               modules=("workers", "tests.support.crashing_actors"))  # fmt: skip
        time.sleep(0.1)

    assert [states[job] for job in innocent] == ["succeeded"] * 3
    assert states[poison] == "dead_lettered"
    [record] = DeadLetters(redis_client).list().records
    assert (record.job_id, record.category) == (poison, "crashed")
    # The poison started exactly as often as its crash budget allows (shipped: 2 retries).
    assert [a["outcome"] for a in record.attempts] == ["crashed"] * 3
    # Each crashed attempt names the worker process that died running it.
    assert all(a["worker"] and ":" in a["worker"] for a in record.attempts), record.attempts
    assert all(a["started_at"] for a in record.attempts), [
        (a["n"], a["worker"], a["started_at"]) for a in record.attempts
    ]
    assert restarts >= 3
    for job in innocent:
        runs = redis_client.llen(f"test:runs:innocent-{innocent.index(job)}")
        assert runs == 1
