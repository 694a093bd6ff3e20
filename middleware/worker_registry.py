"""Advertise each live worker process in Redis, so operators can see who consumes what."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Broker

logger = logging.getLogger(__name__)

#: Sorted set of worker ids scored by their last heartbeat (milliseconds since the epoch).
WORKERS_KEY = "evalq:workers"
#: Prefix of the per-worker description.
WORKER_KEY_PREFIX = "evalq:worker:"

_worker_id: str | None = None


def _forget_worker_id() -> None:
    global _worker_id
    _worker_id = None


# A forked child (each `dramatiq workers` process) works out its own id.
os.register_at_fork(after_in_child=_forget_worker_id)


def worker_id() -> str:
    """This process's worker id, ``<host>:<pid>``: the id the overview lists and the attempt
    timeline names. Worked out once per process (called on every job: no system call)."""
    global _worker_id
    if _worker_id is None:
        _worker_id = f"{socket.gethostname()}:{os.getpid()}"
    return _worker_id


class WorkerRegistry(dramatiq.Middleware):
    """Registers the worker process at boot, refreshes a heartbeat, and removes it at shutdown.

    Each heartbeat also carries the jobs the process runs at that moment (``jobs``: job id,
    queue, actor, start time), which is what the dashboard's running-jobs page reads. A job
    starting or finishing wakes the heartbeat thread early, so the list stays current without a
    Redis round trip on the job's own path.

    Parameters:
      interval_s(float): Seconds between heartbeats.
      min_interval_s(float): Fewest seconds between two heartbeats woken by job changes.
    """

    def __init__(self, *, interval_s: float = 5.0, min_interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.min_interval_s = min_interval_s
        self.worker_id = worker_id()
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._jobs_lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._thread: threading.Thread | None = None

    def before_process_message(self, broker: Broker, message: Any) -> None:
        job = {
            "job_id": message.message_id,
            "queue": message.queue_name,
            "actor": message.actor_name,
            "started_at": int(time.time() * 1000),
        }
        with self._jobs_lock:
            self._jobs[message.message_id] = job
        self._note_change()

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        with self._jobs_lock:
            self._jobs.pop(message.message_id, None)
        self._note_change()

    def _note_change(self) -> None:
        # Already noted since the last beat, as it mostly is on a busy worker: Event.set would
        # take its condition's lock for nothing, twice a job.
        if not self._changed.is_set():
            self._changed.set()

    after_skip_message = after_process_message

    def current_jobs(self) -> list[dict[str, Any]]:
        """The jobs this process runs now, oldest first."""
        with self._jobs_lock:
            return sorted(self._jobs.values(), key=lambda job: job["started_at"])

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self.worker_id = worker_id()
        queues = sorted(worker.consumer_whitelist or broker.get_declared_queues())
        description = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": queues,
            "threads": worker.worker_threads,
            "started_at": int(time.time() * 1000),
        }
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(client, description), daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        try:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(WORKERS_KEY, self.worker_id)
            pipe.delete(WORKER_KEY_PREFIX + self.worker_id)
            pipe.execute()
        except redis.RedisError:
            logger.warning("Could not unregister worker %s.", self.worker_id, exc_info=True)

    def _beat(self, client: redis.Redis, description: dict[str, Any]) -> None:
        ttl = max(int(self.interval_s * 3), 1)
        while True:
            self._changed.clear()
            try:
                document = json.dumps({**description, "jobs": self.current_jobs()})
                pipe = client.pipeline(transaction=False)
                pipe.set(WORKER_KEY_PREFIX + self.worker_id, document, ex=ttl)
                pipe.zadd(WORKERS_KEY, {self.worker_id: int(time.time() * 1000)})
                pipe.execute()
            except redis.RedisError:
                logger.warning("Worker heartbeat failed.", exc_info=True)
            # Job changes bring the next beat forward, but never closer than min_interval_s.
            if self._stop.wait(self.min_interval_s):
                return
            self._changed.wait(max(self.interval_s - self.min_interval_s, 0))
            if self._stop.is_set():
                return


def live_workers(client: redis.Redis, *, within_ms: int = 30_000) -> list[dict[str, Any]]:
    """The workers whose last heartbeat is recent enough, each with ``last_seen_ms_ago``."""
    now_ms = int(time.time() * 1000)
    entries = client.zrangebyscore(WORKERS_KEY, now_ms - within_ms, "+inf", withscores=True)
    if not entries:
        return []
    ids = [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in entries]  # type: ignore[union-attr]
    raws = client.mget([WORKER_KEY_PREFIX + i for i in ids])
    workers = []
    for (_, seen), raw in zip(entries, raws, strict=True):  # type: ignore[arg-type]
        if raw is None:
            continue
        description = json.loads(raw)
        description["last_seen_ms_ago"] = max(now_ms - int(seen), 0)
        workers.append(description)
    return workers
