"""The liveness heartbeat the worker Deployments probe: real workers, a real Redis, the real probe
command, as the kubelet runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from middleware.heartbeat import Heartbeat
from tests.support.pools import WorkerPools
from workers.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.integration

INTERVAL_S = 0.2
#: The probe's window in these tests: several beats, far below the manifests' 30 s.
MAX_AGE_S = 1.5


def run_probe(path: Path, max_age_s: float = MAX_AGE_S) -> subprocess.CompletedProcess[str]:
    """The probe command exactly as the Deployments' exec probes run it."""
    return subprocess.run(
        [sys.executable, "-m", "middleware.heartbeat", str(path), "--max-age-s", str(max_age_s)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``predicate`` until true; seconds it took, or fail naming ``what``."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout_s, f"{what} within {timeout_s} s"
        time.sleep(0.05)
    return time.monotonic() - start


def mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


# --- the probe command --------------------------------------------------------------------------


def test_the_probe_fails_when_no_worker_ever_wrote_a_heartbeat(tmp_path: Path) -> None:
    result = run_probe(tmp_path / "heartbeat")
    assert result.returncode == 1
    assert "no heartbeat yet" in result.stderr


def test_the_probe_passes_on_a_fresh_heartbeat_and_fails_on_a_stale_one(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    beat.touch()
    assert run_probe(beat, max_age_s=30).returncode == 0
    old = time.time() - 31
    os.utime(beat, (old, old))
    stale = run_probe(beat, max_age_s=30)
    assert stale.returncode == 1
    assert "stale" in stale.stderr


def test_the_probe_imports_no_redis_client_and_no_evalq_settings() -> None:
    # It runs every few seconds in every pod: it must stay a cheap stat() of one file.
    code = (
        "import sys, middleware.heartbeat; "
        "sys.exit(int(any(m in sys.modules for m in ('redis', 'config.settings', 'workers'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_heartbeat_has_no_hook_on_the_per_job_path() -> None:
    per_job = [
        name
        for name in dir(dramatiq.Middleware)
        if name.startswith(("before_", "after_"))
        and "worker" not in name
        and getattr(Heartbeat, name) is not getattr(dramatiq.Middleware, name)
    ]
    assert per_job == []


# --- real worker processes ----------------------------------------------------------------------


def heartbeat_env(path: Path) -> dict[str, str]:
    return {"EVALQ_HEARTBEAT_FILE": str(path), "EVALQ_HEARTBEAT_INTERVAL_S": str(INTERVAL_S)}


def test_a_real_worker_refreshes_its_heartbeat_and_the_probe_passes(
    worker_pools: WorkerPools, tmp_path: Path
) -> None:
    beat = tmp_path / "beat" / "heartbeat"
    worker_pools.start("default", threads=1, env=heartbeat_env(beat))
    wait_until(beat.exists, 10, "the first beat")
    first = mtime(beat)
    wait_until(lambda: mtime(beat) > first, 5, "a second beat")
    assert run_probe(beat).returncode == 0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone, so that it can be stopped."""
    server = EmbeddedRedis(data_dir=tmp_path / "own-redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_with_redis_stopped_the_heartbeat_goes_stale_within_the_probe_window(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    pools = WorkerPools(redis_url=own_redis.url, log_dir=tmp_path / "logs")
    try:
        pools.start("default", threads=1, env=heartbeat_env(beat))
        wait_until(lambda: run_probe(beat).returncode == 0, 10, "a fresh heartbeat")
        own_redis.stop()
        stopped = time.monotonic()
        wait_until(lambda: run_probe(beat).returncode == 1, MAX_AGE_S + 5, "a stale heartbeat")
        took = time.monotonic() - stopped
        print(f"heartbeat stale {took:.2f} s after Redis stopped (window {MAX_AGE_S} s)")
        assert took <= MAX_AGE_S + 2 * INTERVAL_S + 1.0
        # The worker process is still running: only the heartbeat says it is stuck.
        assert all(code is None for code in pools.group.poll().values())
    finally:
        pools.stop()


# --- in process, to kill one consumer thread ----------------------------------------------------


def test_a_dead_consumer_thread_stops_the_heartbeat_before_any_job_ran(
    redis_url: str, tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    broker = RedisBroker(
        client=redis.Redis.from_url(redis_url),
        middleware=[Heartbeat(beat, interval_s=INTERVAL_S)],
        namespace="heartbeat-test",
    )
    broker.declare_queue("lane")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        # In place before the first job: nothing was ever enqueued.
        wait_until(beat.exists, 5, "the first beat of an idle worker")
        first = mtime(beat)
        wait_until(lambda: mtime(beat) > first, 5, "a second beat")

        consumer = worker.consumers["lane"]
        consumer.stop()
        consumer.join(timeout=5)
        assert not consumer.is_alive()
        last = mtime(beat)
        time.sleep(6 * INTERVAL_S)
        assert mtime(beat) == last
        assert run_probe(beat, max_age_s=5 * INTERVAL_S).returncode == 1
    finally:
        worker.stop(timeout=2000)
        broker.close()


def test_a_restarted_worker_does_not_pass_on_the_previous_containers_heartbeat(
    redis_url: str, tmp_path: Path
) -> None:
    # The emptyDir outlives a container restart; the file left in it must not count.
    beat = tmp_path / "heartbeat"
    beat.touch()
    interval_s = 1.0
    broker = RedisBroker(
        client=redis.Redis.from_url(redis_url),
        middleware=[Heartbeat(beat, interval_s=interval_s)],
        namespace="heartbeat-test",
    )
    broker.declare_queue("lane")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert run_probe(beat).returncode == 1
        wait_until(beat.exists, 5 * interval_s, "the new worker's first beat")
        assert run_probe(beat).returncode == 0
    finally:
        worker.stop(timeout=2000)
        broker.close()
