"""One stack's worker pool and one timed trial on it, for ``bench_throughput``.

A trial stages its jobs out of the workers' sight (pipelined into keys of another namespace),
takes a snapshot of Redis' ``INFO commandstats`` and the pool's CPU time, then renames the
staged keys into the pool's queue in one MULTI: every job becomes visible at once, so the clock
measures the workers and not the producer (``send()`` is measured on its own). The trial ends when
no message of the queue or its delay queue is left, i.e. every job was acked for good.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq
import psutil
import redis

from workers.process_group import ProcessGroup

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGING = "bench-staging"
_CHUNK = 1_000
_POLL_S = 0.005
#: After the last ack: time for background writers (evalq's history flusher) to finish.
SETTLE_S = 0.3


@dataclass
class TrialResult:
    """What one trial measured."""

    jobs: int
    seconds: float
    commands: int
    cpu_s: float
    rss_bytes: int
    redis_cpu_s: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def commands_per_job(self) -> float:
        return self.commands / self.jobs

    @property
    def cpu_us_per_job(self) -> float:
        return self.cpu_s / self.jobs * 1e6

    @property
    def redis_cpu_us_per_job(self) -> float:
        return self.redis_cpu_s / self.jobs * 1e6


@dataclass
class Pool:
    """``dramatiq bench.throughput_actors`` for one stack: ``processes`` x ``threads``."""

    stack: str
    processes: int
    threads: int
    env: dict[str, str]
    log_dir: Path
    #: The tree whose ``bench.throughput_actors`` (and evalq) the workers import.
    tree: Path = REPO_ROOT
    group: ProcessGroup = field(default_factory=ProcessGroup)

    @property
    def queue(self) -> str:
        return f"bench.{self.stack}"

    def start(self, client: redis.Redis) -> None:
        """Start the pool and wait until each of its processes fetches from Redis."""
        before = client.zcard("dramatiq:__heartbeats__")
        argv = [sys.executable, "-m", "dramatiq", "bench.throughput_actors",
                "--processes", str(self.processes), "--threads", str(self.threads),
                "--queues", self.queue]  # fmt: skip
        env = {"BENCH_STACK": self.stack, "BENCH_QUEUE": self.queue, **self.env}
        log_path = self.log_dir / f"{self.stack}-p{self.processes}t{self.threads}.log"
        self.group.start(self.stack, argv, env=env, log_path=log_path, cwd=self.tree)
        deadline = time.monotonic() + 60
        while client.zcard("dramatiq:__heartbeats__") < before + self.processes:
            if self.group.poll()[self.stack] is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.stack} workers did not start; see {log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.group.stop(timeout=20)

    def processes_now(self) -> list[psutil.Process]:
        root = psutil.Process(self.group.pids()[self.stack])
        return [root, *root.children(recursive=True)]

    def cpu_s(self) -> float:
        """User + system CPU seconds of the pool's processes so far."""
        total = 0.0
        for process in self.processes_now():
            times = process.cpu_times()
            total += times.user + times.system
        return total

    def worker_rss_bytes(self) -> int:
        """Resident memory of the worker processes (the forked children, not the supervisor)."""
        return sum(p.memory_info().rss for p in self.processes_now()[1:])


def command_calls(client: redis.Redis) -> int:
    """Commands Redis has executed so far, those run inside scripts included."""
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def _stage(client: redis.Redis, queue: str, actor: str, jobs: int) -> None:
    staged_ids, staged_msgs = f"{STAGING}:{queue}", f"{STAGING}:{queue}.msgs"
    client.delete(staged_ids, staged_msgs)
    for start in range(0, jobs, _CHUNK):
        mapping: dict[str, bytes] = {}
        for _ in range(min(_CHUNK, jobs - start)):
            redis_message_id = str(uuid.uuid4())
            message = dramatiq.Message(queue_name=queue, actor_name=actor, args=(), kwargs={},
                                       options={"redis_message_id": redis_message_id})  # fmt: skip
            mapping[redis_message_id] = message.encode()
        pipe = client.pipeline(transaction=False)
        pipe.hset(staged_msgs, mapping=mapping)  # type: ignore[arg-type]
        pipe.rpush(staged_ids, *mapping)
        pipe.execute()


def _release(client: redis.Redis, queue: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.rename(f"{STAGING}:{queue}", f"dramatiq:{queue}")
    pipe.rename(f"{STAGING}:{queue}.msgs", f"dramatiq:{queue}.msgs")
    pipe.execute()


def _wait_until_drained(client: redis.Redis, queue: str, timeout: float) -> int:
    """Wait until neither the queue nor its delay queue holds a message; the polls made."""
    polls, deadline = 0, time.monotonic() + timeout
    while True:
        pipe = client.pipeline(transaction=False)
        pipe.hlen(f"dramatiq:{queue}.msgs")
        pipe.hlen(f"dramatiq:{queue}.DQ.msgs")
        polls += 1
        if sum(pipe.execute()) == 0:
            return polls
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue} still had messages after {timeout}s")
        time.sleep(_POLL_S)


def redis_cpu_s(client: redis.Redis) -> float:
    """User + system CPU seconds the Redis server has used so far."""
    stats = client.info("cpu")
    return float(stats["used_cpu_user"]) + float(stats["used_cpu_sys"])


def run_trial(client: redis.Redis, pool: Pool, actor: str, jobs: int) -> TrialResult:
    """Time ``jobs`` jobs of ``actor`` through ``pool``; count commands and CPU (the workers'
    and the Redis server's) around them."""
    _stage(client, pool.queue, actor, jobs)
    commands_before, cpu_before = command_calls(client), pool.cpu_s()
    server_before = redis_cpu_s(client)
    started = time.perf_counter()
    _release(client, pool.queue)
    polls = _wait_until_drained(client, pool.queue, timeout=max(120.0, jobs / 50))
    seconds = time.perf_counter() - started
    time.sleep(SETTLE_S)
    cpu = pool.cpu_s() - cpu_before
    # Ours, not the workers': MULTI + 2 RENAME + EXEC, 2 HLEN per poll, one INFO.
    ours = 4 + 2 * polls + 1
    commands = command_calls(client) - commands_before - ours
    server = redis_cpu_s(client) - server_before  # the bench's polls included: a few µs a job
    return TrialResult(jobs, seconds, commands, cpu, pool.worker_rss_bytes(), server)


def warm_up(client: redis.Redis, pool: Pool, jobs: int = 200) -> None:
    """Run a few no-op jobs so that scripts are loaded and connections are open."""
    run_trial(client, pool, "noop", jobs)


def median(results: list[TrialResult], attribute: str) -> float:
    """Median of one measured figure over trials."""
    return float(statistics.median(getattr(result, attribute) for result in results))
