"""The Redis primary SIGKILLed in the middle of a stream of evaluations, behind three sentinels:
the sentinels promote the replica, the producer and the workers follow it by themselves, no
job is lost, a job runs twice only if its delivery was in flight when the primary died, and every
(evaluation, target) keeps one result. Then the same with the old primary coming back, which
the sentinels turn into a replica of the new one."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from config.settings import read_settings
from middleware.state.connections import redis_client
from middleware.state.jobs import History
from middleware.state.keys import DRAMATIQ_NAMESPACE
from tests.reliability.chaos import (
    BATCH,
    LIVE,
    Job,
    LanePools,
    scaled,
    tally,
    wait_until_settled,
)
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request
from tests.support.sentinel import SentinelSet, sentinel_set
from workers.client import Evalq
from workers.demo.provider import ChatRequest, Reply, SimulatedProvider

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

JOBS = scaled(1000, 2000)
RUNS = scaled(1, 2)
#: Submissions per call of the producer, and its pause between calls, in seconds: a stream
#: that is still flowing when the primary dies.
CHUNK, PAUSE_S = 10, 0.01
#: The primary dies once this share of the stream was submitted.
KILL_AT = 0.3
ALLOWED = {LIVE: 4, BATCH: 12}


def quick_verdict(request: ChatRequest) -> Reply:
    """Answers take 10-40 ms (stable per target), so jobs are in flight when the primary dies."""
    digest = hashlib.sha256((request.target or "").encode()).digest()
    return Reply.slow(0.01 + digest[0] / 255 * 0.03)


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider(quick_verdict) as server:
        yield server


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(
        tmp_path / "sentinel-set", down_after_ms=1000, failover_timeout_ms=2000
    ) as nodes:
        yield nodes


@dataclass
class Producer:
    """Submits ``count`` evaluations, ``CHUNK`` at a time, through the client object, from a
    thread; notes when each call returned."""

    client: Evalq
    count: int
    jobs: list[Job] = field(default_factory=list)
    deduplicated: int = 0
    returned_at: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for start in range(0, self.count, CHUNK):
                requests = [llm_request() for _ in range(min(CHUNK, self.count - start))]
                lane = "live" if (start // CHUNK) % 3 == 0 else "batch"
                handles = self.client.submit_many(requests, lane=lane)  # type: ignore[arg-type]
                self.returned_at.append(time.monotonic())
                for handle, request in zip(handles, requests, strict=True):
                    self.deduplicated += handle.deduplicated
                    pair = (request["evaluation"]["uuid"], request["target"]["uuid"])
                    self.jobs.append(Job(handle.id, LIVE if lane == "live" else BATCH, pair))
                time.sleep(PAUSE_S)
        except BaseException as error:  # reported by the test
            self.error = error


class Settled:
    """Counts, from a thread, the jobs in a final state, through its own Sentinel client: when
    the count rises again after the kill, the workers are running on the new primary."""

    def __init__(self, url: str, producer: Producer) -> None:
        self.client = redis_client(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.producer = producer
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from tests.reliability.chaos import states

        while not self._stop.wait(0.05):
            jobs = list(self.producer.jobs)
            try:
                found = states(self.client, [job.id for job in jobs])
            except redis.RedisError:
                continue
            done = sum(1 for s in found.values() if s == "succeeded")
            self.samples.append((time.monotonic(), done))

    def resumed_after(self, killed_at: float) -> float | None:
        """Seconds from ``killed_at`` until the settled count first rose on the new primary."""
        after = [(t, n) for t, n in self.samples if t > killed_at]
        if not after:
            return None
        base = after[0][1]
        return next((t - killed_at for t, n in after if n > base), None)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.client.close()


def in_flight(client: redis.Redis) -> int:
    """Deliveries fetched by workers and not yet acked: prefetched or running."""
    return sum(
        int(client.scard(key)) for key in client.scan_iter(f"{DRAMATIQ_NAMESPACE}:__acks__.*")
    )


@pytest.mark.parametrize("run", range(1, RUNS + 1))
@pytest.mark.parametrize("comeback", [False, True], ids=["primary-gone", "primary-returns"])
def test_a_failover_mid_stream_loses_no_job_and_keeps_every_result_single(
    comeback: bool,
    run: int,
    sentinels: SentinelSet,
    provider: SimulatedProvider,
    quick_policy: Path,
    tmp_path: Path,
) -> None:
    url = sentinels.url
    env = {
        # The heartbeat timeout outlives the failover, so no worker takes another for dead.
        "EVALQ_HEARTBEAT_TIMEOUT_MS": "15000",
        "EVALQ_REDELIVERY_INTERVAL_MS": "500",
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-reliability-not-a-real-key",
        "EVALQ_PROVIDER_TIMEOUT_S": "5",
        "EVALQ_POLICY_FILE": str(quick_policy),
    }
    pools = WorkerPools(redis_url=url, log_dir=tmp_path / "worker-logs")
    lanes = LanePools(pools, env=env, processes={LIVE: 1, BATCH: 1}, threads=4)
    reader = redis_client(url)
    try:
        lanes.start_all()
        producer = Producer(Evalq(read_settings(redis_url=url)), JOBS)
        producer.thread.start()
        settled = Settled(url, producer)

        while len(producer.jobs) < JOBS * KILL_AT and producer.thread.is_alive():
            time.sleep(0.01)
        held = in_flight(reader)
        old = sentinels.node_on(sentinels.primary_port() or 0)
        sentinels.kill(old)
        killed_at = time.monotonic()
        while sentinels.primary_port() in (None, sentinels.nodes[old].port):
            assert time.monotonic() - killed_at < 30, f"no promotion:\n{sentinels.logs()}"
            time.sleep(0.05)
        promoted_s = time.monotonic() - killed_at
        restarted_at = time.monotonic()
        if comeback:
            sentinels.restart(old)

        producer.thread.join(timeout=120)
        assert producer.error is None, f"the producer failed: {producer.error!r}"
        found = wait_until_settled(reader, producer.jobs, timeout=120)
        settled.stop()
        result = tally(reader, producer.jobs, allowed=ALLOWED)
        asked_twice = sum(
            1 for job in producer.jobs if provider.count(f"{job.pair[0]}/{job.pair[1]}") > 1
        )
        producer_s = next((t - killed_at for t in producer.returned_at if t > killed_at), None)
        workers_s = settled.resumed_after(killed_at)
        back_s = _rejoined(sentinels, old, reader) - restarted_at if comeback else None
        print(
            f"\nSentinel failover run {run} "
            f"({'old primary returns' if comeback else 'primary gone'}): "
            f"{result.summary()}; in flight at the kill {held}, asked the provider twice "
            f"{asked_twice}; promotion {promoted_s:.1f} s, producer back {_s(producer_s)}, "
            f"workers settling again {_s(workers_s)}"
            + (f", old primary a replica in sync {_s(back_s)}" if comeback else "")
        )
    finally:
        pools.stop()
        reader.close()

    assert len(producer.jobs) == JOBS and len({job.id for job in producer.jobs}) == JOBS
    assert producer.deduplicated == 0, "a retried submission was reported as a duplicate"
    assert result.lost == [], _lost(result.lost, producer, found, killed_at, reader_url=url)
    assert result.stuck_running == []
    assert result.unfinished_held == [], f"unfinished: {found}"
    assert result.succeeded == JOBS, result.summary()
    assert result.missing_results == []
    assert result.duplicated_results == 0
    assert asked_twice <= held, f"{asked_twice} jobs ran twice, {held} were in flight"
    assert workers_s is not None, "the workers never settled a job on the new primary"


def _lost(
    lost: list[str],
    producer: Producer,
    found: dict[str, str | None],
    killed_at: float,
    *,
    reader_url: str,
) -> str:
    """Each lost job's state, timeline and when its submission returned, against the kill."""
    index = {job.id: n for n, job in enumerate(producer.jobs)}
    client = redis_client(reader_url)
    try:
        documents = History(client).show_many(lost)
    finally:
        client.close()
    lines = [f"lost {len(lost)}:"]
    for job_id, document in zip(lost, documents, strict=True):
        returned = producer.returned_at[index[job_id] // CHUNK] - killed_at
        lines.append(
            f"  {job_id}: state {found.get(job_id)!r}, submitted {returned:+.3f} s from the "
            f"kill, timeline {document}"
        )
    return "\n".join(lines)


def _rejoined(sentinels: SentinelSet, name: str, primary: redis.Redis) -> float:
    """When (``time.monotonic``) node ``name`` was a replica in sync holding every key of the
    primary; fails the test after a minute."""
    began = time.monotonic()
    expected = int(primary.dbsize())
    node = redis.Redis(host="127.0.0.1", port=sentinels.nodes[name].port, socket_timeout=0.5)
    try:
        while time.monotonic() - began < 60:
            try:
                if sentinels.replica_in_sync(name) and int(node.dbsize()) == expected:
                    return time.monotonic()
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{name} never rejoined as a replica:\n{sentinels.logs()}")
    finally:
        node.close()


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
