"""Whole worker groups SIGKILLed again and again while evaluations run on both lanes, restarted
as a supervisor would: nothing is lost, nothing is left `running`, one result per (evaluation,
target), and no job runs more often than its policy allows."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from middleware.state import keys
from tests.reliability.chaos import (
    BATCH,
    FAST_RECOVERY,
    LIVE,
    Job,
    LanePools,
    scaled,
    seconds,
    states,
    tally,
    wait_until_settled,
)
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, rule_request
from workers import client
from workers.demo.provider import ChatRequest, Reply, SimulatedProvider

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

JOBS = scaled(100, 320)
KILLS = scaled(3, 8)
RUNS = scaled(1, 3)
#: Attempts one job may have per queue under the shipped policy (max_attempts).
ALLOWED = {LIVE: 4, BATCH: 12}
#: After a kill, the killed pool runs again for this long before the next kill.
DWELL_S = 1.0


def slow_verdict(request: ChatRequest) -> Reply:
    """Every answer takes 0.3-0.9 s (stable per target), so kills land on requests in flight."""
    digest = hashlib.sha256((request.target or "").encode()).digest()
    return Reply.slow(0.3 + digest[0] / 255 * 0.6)


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(slow_verdict) as server:
        yield server


def submit(count: int, rng: random.Random) -> list[Job]:
    """``count`` evaluations, 60% LLM judges and 40% rule metrics, split across both lanes."""
    jobs: list[Job] = []
    by_lane: dict[str, list[dict[str, object]]] = {"live": [], "batch": []}
    for i in range(count):
        request = llm_request() if rng.random() < 0.6 else rule_request()
        by_lane["live" if i % 3 == 0 else "batch"].append(request)
    for lane, requests in by_lane.items():
        handles = client.submit_many(requests, lane=lane)  # type: ignore[arg-type]
        queue = LIVE if lane == "live" else BATCH
        for handle, request in zip(handles, requests, strict=True):
            evaluation, target = request["evaluation"], request["target"]
            pair = (evaluation["uuid"], target["uuid"])  # type: ignore[index]
            jobs.append(Job(handle.id, queue, pair))
    return jobs


def running_in(redis_client: redis.Redis, jobs: list[Job], queue: str) -> dict[str, int]:
    """Jobs of ``queue`` recorded as running, with their attempt counters."""
    lane_jobs = [job.id for job in jobs if job.queue == queue]
    running = [j for j, s in states(redis_client, lane_jobs).items() if s == "running"]
    counters = redis_client.mget([keys.attempt_counter_key(j) for j in running]) if running else []
    return {j: int(c or 0) for j, c in zip(running, counters, strict=True)}


@pytest.mark.parametrize("run", range(1, RUNS + 1))
def test_killing_whole_worker_groups_loses_no_job_and_leaves_none_running(
    run: int,
    worker_pools: WorkerPools,
    redis_client: redis.Redis,
    provider: SimulatedProvider,
    quick_policy: Path,
) -> None:
    env = {
        **FAST_RECOVERY,
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-reliability-not-a-real-key",
        "EVALQ_PROVIDER_TIMEOUT_S": "5",
        "EVALQ_POLICY_FILE": str(quick_policy),
    }
    lanes = LanePools(worker_pools, env=env, processes={LIVE: 1, BATCH: 2}, threads=2)
    lanes.start_all()
    rng = random.Random(run)
    jobs = submit(JOBS, rng)
    started = time.monotonic()

    watch = RecoveryWatch(worker_pools.redis_url)
    kills: list[tuple[str, float, dict[str, int]]] = []  # queue, when, victims' counters
    restarts: list[float] = []
    queue = LIVE
    while len(kills) < KILLS:
        assert time.monotonic() - started < 120, f"only {len(kills)} kills before the jobs ran out"
        victims = running_in(redis_client, jobs, queue)
        if not victims:
            queue = BATCH if queue == LIVE else LIVE
            time.sleep(0.05)
            continue
        lanes.kill(queue)
        kills.append((queue, time.monotonic(), victims))
        watch.killed(kills[-1][1], victims)
        restarts.append(lanes.start(queue))
        time.sleep(DWELL_S)
        queue = BATCH if queue == LIVE else LIVE

    watch.wait(timeout=60)
    first = list(watch.first_again.values())
    redelivered, finished = list(watch.started_again.values()), list(watch.finished.values())
    found = wait_until_settled(redis_client, jobs, timeout=120)
    ran_for = time.monotonic() - started
    result = tally(redis_client, jobs, allowed=ALLOWED)
    over_asked = [
        job.id
        for job in jobs
        if provider.count(f"{job.pair[0]}/{job.pair[1]}")
        > max(len_attempts(redis_client, job.id), 1)
    ]
    print(
        f"\nSIGKILL loop run {run}: {result.summary()}; {len(kills)} kills "
        f"({sum(len(v) for _, _, v in kills)} jobs in flight), pool restart "
        f"{seconds(restarts)}, first killed job started again {seconds(first)}, all "
        f"{seconds(redelivered)}, all finished "
        f"{seconds(finished)}; provider requests {provider.count()}; {ran_for:.1f} s"
    )

    assert len(kills) == KILLS
    assert result.lost == [], f"lost: {result.lost}"
    assert result.stuck_running == []
    assert result.unfinished_held == [], f"unfinished: {found}"
    assert result.succeeded + result.dead_lettered == JOBS
    assert set(result.dead_by_category) <= {"crashed"}
    assert result.missing_results == []
    assert result.duplicated_results == 0
    assert result.attempts_over_budget == []
    assert over_asked == [], "a job asked the provider more often than it started"
    assert redis_client.hlen(keys.queue_messages_key(LIVE)) == 0
    assert redis_client.hlen(keys.queue_messages_key(BATCH)) == 0


def len_attempts(redis_client: redis.Redis, job_id: str) -> int:
    return int(redis_client.hlen(keys.attempts_key(job_id)))


class RecoveryWatch:
    """Watches, from a thread of its own, the jobs each kill interrupted: seconds until the first
    of them had started again, until all had (they run one at a time: see
    ``middleware.isolation``), and until all had finished."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.kills: list[tuple[float, dict[str, int]]] = []
        self.first_again: dict[int, float] = {}
        self.started_again: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def killed(self, at: float, victims: dict[str, int]) -> None:
        with self._lock:
            self.kills.append((at, victims))

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.finished) == len(self.kills):
                    break
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                open_kills = [
                    (i, at, victims)
                    for i, (at, victims) in enumerate(self.kills)
                    if i not in self.finished
                ]
            for i, at, victims in open_kills:
                self._look(i, at, victims)
            time.sleep(0.05)

    def _look(self, i: int, at: float, victims: dict[str, int]) -> None:
        jobs = sorted(victims)
        found = states(self.client, jobs)
        counters = self.client.mget([keys.attempt_counter_key(j) for j in jobs])
        now = time.monotonic()
        done = [found[j] in ("succeeded", "dead_lettered") for j in jobs]
        again = [
            d or int(c or 0) > victims[j] for j, d, c in zip(jobs, done, counters, strict=True)
        ]
        with self._lock:
            if any(again) and i not in self.first_again:
                self.first_again[i] = now - at
            if all(again) and i not in self.started_again:
                self.started_again[i] = now - at
            if all(done):
                self.finished[i] = now - at
