"""What the reliability scenarios share: their scale, worker pools per lane that can be killed
and restarted as a supervisor would, and the tally of a run read back from Redis.

``make test`` runs every scenario short; ``make chaos`` (``EVALQ_CHAOS=long``) runs them long.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil
import redis

from middleware.state import keys
from middleware.state.connections import redis_client
from middleware.state.job_states import TERMINAL_STATES
from middleware.state.jobs import History
from middleware.worker_registry import live_workers
from tests.support.pools import WorkerPools
from workers.results import INDEX_KEY_PREFIX, RESULT_KEY_PREFIX

T = TypeVar("T")

#: ``EVALQ_CHAOS=long`` (``make chaos``) runs every scenario at its long scale.
LONG = os.environ.get("EVALQ_CHAOS", "").strip().lower() == "long"

LIVE, BATCH = "evaluations.live", "evaluations.batch"
LANE_OF_QUEUE = {LIVE: "live", BATCH: "batch"}

#: A dead worker's jobs come back within 2 s + 0.5 s: short enough for a test.
FAST_RECOVERY = {"EVALQ_HEARTBEAT_TIMEOUT_MS": "2000", "EVALQ_REDELIVERY_INTERVAL_MS": "500"}

#: Policy overrides for the test environment: the shipped budgets, with backoffs of a test.
QUICK_BACKOFF = "".join(
    f"""
[environments.test.categories.{category}]
min_backoff_ms = 50
max_backoff_ms = 400
"""
    for category in ("provider_unavailable", "timeout", "crashed", "unknown", "rate_limited")
)


def scaled(short: T, long: T) -> T:
    """``long`` under ``make chaos``, else ``short``."""
    return long if LONG else short


class LanePools:
    """One ``dramatiq workers`` pool per lane, each a process group that can be SIGKILLed whole
    and started again."""

    def __init__(
        self,
        pools: WorkerPools,
        *,
        env: Mapping[str, str],
        processes: Mapping[str, int],
        threads: int = 4,
        modules: tuple[str, ...] = ("workers",),
    ) -> None:
        self.pools = pools
        self.env = dict(env)
        self.processes = dict(processes)
        self.threads = threads
        self.modules = modules
        self.names: dict[str, str] = {}

    def start_all(self) -> None:
        for queue in self.processes:
            self.start(queue)

    def start(self, queue: str, timeout: float = 60.0) -> float:
        """Start ``queue``'s pool and wait until its processes consume; returns the seconds it
        took."""
        began = time.monotonic()
        name = self.pools.start(
            queue,
            processes=self.processes[queue],
            threads=self.threads,
            env=self.env,
            modules=self.modules,
            wait=False,
        )
        self.names[queue] = name
        leader = self.pools.group.pids()[name]
        deadline = began + timeout
        while True:
            registered = {w["pid"] for w in self._live_workers()}
            children = _children(leader)
            if len(children) >= self.processes[queue] and children <= registered:
                return time.monotonic() - began
            code = self.pools.group.poll().get(name)
            if code is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"pool {name} for {queue} did not start (exit {code}):\n{self.pools.log(name)}"
                )
            time.sleep(0.05)

    def _live_workers(self) -> list[dict[str, Any]]:
        client = redis_client(self.pools.redis_url)  # a Sentinel URL too
        try:
            return live_workers(client)
        finally:
            client.close()

    def kill(self, queue: str) -> None:
        """SIGKILL ``queue``'s whole pool (the dramatiq main process and every worker) and wait
        until it is gone."""
        leader = self.pools.group.pids()[self.names[queue]]
        try:
            os.killpg(leader, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while _children(leader) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.pools.group.poll()  # reap the leader

    def logs(self) -> str:
        return "\n".join(self.pools.log(name) for name in self.pools.group.pids())


def _children(pid: int) -> set[int]:
    try:
        return {
            child.pid
            for child in psutil.Process(pid).children(recursive=True)
            if child.status() != psutil.STATUS_ZOMBIE
        }
    except psutil.NoSuchProcess:
        return set()


@dataclass(frozen=True)
class Job:
    """A submitted evaluation: its job id, queue and (evaluation, target) pair."""

    id: str
    queue: str
    pair: tuple[str, str]


def states(client: redis.Redis, job_ids: Iterable[str]) -> dict[str, str | None]:
    """Each job's state, in one pipelined round trip."""
    ids = list(job_ids)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job_key(job_id), "state")
    return {
        j: (None if s is None else keys.text(s)) for j, s in zip(ids, pipe.execute(), strict=True)
    }


def wait_until_settled(
    client: redis.Redis, jobs: Iterable[Job], *, timeout: float
) -> dict[str, str | None]:
    """Poll until every job is in a terminal state or ``timeout`` seconds passed; the states."""
    ids = [job.id for job in jobs]
    deadline = time.monotonic() + timeout
    while True:
        found = states(client, ids)
        if all(state in TERMINAL_STATES for state in found.values()):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def held_messages(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Job ids whose message is still in the broker: ready, delayed, prefetched or running."""
    held: set[str] = set()
    for queue in queues:
        for name in (queue, f"{queue}.DQ"):
            for data in client.hvals(keys.queue_messages_key(name)):
                held.add(_message_id(data))
    return held


def _message_id(data: bytes) -> str:
    import json

    try:
        return str(json.loads(data)["message_id"])
    except Exception:
        return "<undecodable>"


@dataclass
class Tally:
    """A run's outcome, as an operator would read it back from Redis."""

    submitted: int
    by_state: Counter[str]
    dead_by_category: Counter[str]
    stuck_running: list[str]  # acked (no message left) yet still `running`
    lost: list[str]  # not finished and no message left to finish them
    unfinished_held: list[str]  # not finished, message still in the broker
    missing_results: list[str]  # succeeded without a stored result
    duplicated_results: int  # results beyond one per (evaluation, target)
    max_attempts_seen: dict[str, int]  # per queue
    attempts_over_budget: list[str]
    crashed_attempts: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> int:
        return self.by_state["succeeded"]

    @property
    def dead_lettered(self) -> int:
        return self.by_state["dead_lettered"]

    def summary(self) -> str:
        return (
            f"submitted {self.submitted}, succeeded {self.succeeded}, dead-lettered "
            f"{self.dead_lettered} {dict(self.dead_by_category)}, lost {len(self.lost)}, "
            f"stuck running {len(self.stuck_running)}, duplicated results "
            f"{self.duplicated_results}, missing results {len(self.missing_results)}, "
            f"max attempts seen {self.max_attempts_seen}, crashed attempts "
            f"{self.crashed_attempts} {self.extra}"
        )


def tally(client: redis.Redis, jobs: list[Job], *, allowed: Mapping[str, int]) -> Tally:
    """Read every job's state, result and timeline back; ``allowed`` is the attempts each queue's
    policy allows one job."""
    found = states(client, [job.id for job in jobs])
    held = held_messages(client, {job.queue for job in jobs})
    documents = History(client).show_many([job.id for job in jobs])
    dead: Counter[str] = Counter()
    max_seen: dict[str, int] = {}
    over: list[str] = []
    crashed = 0
    for job, document in zip(jobs, documents, strict=True):
        attempts = [
            a for a in (document or {}).get("attempts", []) if a.get("outcome") != "throttled"
        ]
        crashed += sum(1 for a in attempts if a.get("outcome") == "crashed")
        max_seen[job.queue] = max(max_seen.get(job.queue, 0), len(attempts))
        if len(attempts) > allowed[job.queue]:
            over.append(job.id)
        if found[job.id] == "dead_lettered":
            dead[str((document or {}).get("category") or "?")] += 1
    unfinished = [job.id for job in jobs if found[job.id] not in TERMINAL_STATES]
    pairs = {job.pair for job in jobs}
    results = sum(1 for _ in client.scan_iter(f"{RESULT_KEY_PREFIX}*", count=1000))
    indexed = sum(client.scard(f"{INDEX_KEY_PREFIX}{e}") for e in {p[0] for p in pairs})
    succeeded_pairs = {job.pair for job in jobs if found[job.id] == "succeeded"}
    pipe = client.pipeline(transaction=False)
    for pair in sorted(succeeded_pairs):
        pipe.exists(f"{RESULT_KEY_PREFIX}{pair[0]}:{pair[1]}")
    missing = [
        f"{e}/{t}"
        for (e, t), ok in zip(sorted(succeeded_pairs), pipe.execute(), strict=True)
        if not ok
    ]
    return Tally(
        submitted=len(jobs),
        by_state=Counter(str(s) for s in found.values()),
        dead_by_category=dead,
        stuck_running=[j for j in unfinished if found[j] == "running" and j not in held],
        lost=[j for j in unfinished if j not in held],
        unfinished_held=[j for j in unfinished if j in held],
        missing_results=missing,
        duplicated_results=max(results - len(pairs), 0) + max(indexed - len(pairs), 0),
        max_attempts_seen=max_seen,
        attempts_over_budget=over,
        crashed_attempts=crashed,
    )


def seconds(values: list[float]) -> str:
    """``median m s, max x s over n`` of a list of durations."""
    if not values:
        return "none measured"
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s over {len(values)}"
