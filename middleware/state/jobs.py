"""Each job's state and attempt timeline in Redis: ``History``, and the start of an attempt.

The states and their transitions are ``middleware.state.job_states``'. The worker's hot path pays
one round trip per attempt before the actor runs: the start script counts the attempt and records
the job running (so a crash is visible), sent with the starts and finishes of the process's other
threads, and with the outcome this thread posted for its previous job
(``middleware.state.group_commit``). What need not be in Redis before a delivery is
settled (attempt entries written outside a settlement, the per-minute outcome counts,
``record_state``'s changes) is buffered per process and written in pipelined batches by a
background thread.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import redis

from middleware.state import keys
from middleware.state.group_commit import GroupCommit

# search_jobs is the job index's query, importable from here, where jobs are.
from middleware.state.job_index import search_jobs as search_jobs
from middleware.state.job_index import trim_job_index
from middleware.state.job_states import QUEUED, RUNNING
from middleware.state.scripts import scripts_for

logger = logging.getLogger(__name__)

#: How long the per-minute outcome counts are kept, in seconds (the dashboard charts one hour).
OUTCOME_COUNTS_TTL_S = 2 * 3600
#: How long a stopping worker waits for the outcomes it posted to be written, in seconds.
DRAIN_TIMEOUT_S = 30.0


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return int(time.time() * 1000)


class Started(NamedTuple):
    """What ``History.start_attempt`` found: the attempt's number, whether an operator asked to
    abort the job, and the worker (``host:pid``) and start (ms) of the job's previous start, if
    any: the attempt that died, when that start never got an outcome."""

    n: int
    aborted: bool
    previous_worker: str | None = None
    previous_started_at: int | None = None


def start_call(
    job_id: str,
    *,
    ttl_s: int,
    queue: str,
    actor: str,
    running_until: int,
    enqueued_at: int | None = None,
    worker: str = "",
    redis_message_id: str = "",
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ``lua/start.lua`` (``History.start_attempt``)."""
    script_keys = [keys.attempt_counter_key(job_id), keys.job_key(job_id), keys.abort_key(job_id)]
    args = [
        job_id, ttl_s, queue, actor, now_ms(), running_until, RUNNING, enqueued_at or "",
        keys.JOB_INDEX_PREFIX, worker, redis_message_id,
    ]  # fmt: skip
    return script_keys, args


class History:
    """Reads and writes job states and attempt timelines, and keeps the job index in step.

    Parameters:
      client(redis.Redis): The Redis client (shared with the broker).
      ttl_s(int): How long a job's records are kept after their last change, in seconds; jobs
        stay in the job index this long after they were enqueued.
      flush_interval_s(float): How often buffered writes are flushed, in seconds.
      max_buffer(int): Flush early once this many writes are buffered.
      trim_interval_s(float): How often the job index is trimmed by age, in seconds, by one
        process at a time (the flusher of whichever process gets there first).
      payload_bytes(int): Largest copy of a finished job's payload its record keeps
        (``middleware.state.payload_copy``), in bytes; 0 keeps none.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_s: int = 7 * 24 * 3600,
        flush_interval_s: float = 0.1,
        max_buffer: int = 500,
        trim_interval_s: float = 60.0,
        payload_bytes: int = 0,
    ) -> None:
        self.client = client
        self.payload_bytes = payload_bytes
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.trim_interval_s = trim_interval_s
        self._scripts = scripts_for(client)
        #: The starts of a process's threads share round trips, and its outcomes are posted
        #: through it (middleware.state.group_commit, middleware.outcomes). Every start is
        #: sent again by settle() when its round trip fails.
        self.commits = GroupCommit(client, resends=True)
        # ("attempt", job id, entry) or ("state", job id, fields, enqueued_at)
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_trim = 0.0

    # --- synchronous writes ------------------------------------------------------------------

    def record_enqueued(self, job_id: str, *, queue: str, actor: str) -> None:
        """Mark a freshly enqueued job ``queued`` (the submitter's path, not the worker's)."""
        enqueued_at = now_ms()
        fields = {"state": QUEUED, "queue": queue, "actor": actor, "enqueued_at": enqueued_at}
        self._scripts.transition(*self._transition_call(job_id, fields, enqueued_at))

    def start_attempt(
        self,
        job_id: str,
        *,
        queue: str,
        actor: str,
        running_until: int,
        enqueued_at: int | None = None,
        worker: str = "",
        redis_message_id: str = "",
    ) -> Started:
        """Count a new attempt and record it as running, in one round trip (shared with the
        starts other threads of the process make at the same moment).

        ``running_until`` (ms since the epoch) is when the attempt's time limit has certainly
        passed: a job still ``running`` after it is known to be dead. ``enqueued_at`` (the
        message timestamp) indexes a job the job index does not know yet. ``worker`` (the
        process running it) and ``redis_message_id`` (its delivery, holding its payload) are
        recorded for the dashboard. Returns the attempt's number, whether an operator asked to
        abort the job, and the worker and start of the job's previous start (see ``Started``).
        """
        script_keys, args = start_call(
            job_id, ttl_s=self.ttl_s, queue=queue, actor=actor, running_until=running_until,
            enqueued_at=enqueued_at, worker=worker, redis_message_id=redis_message_id,
        )  # fmt: skip
        n, aborted, worker_before, started_before = self.commits(
            self._scripts.start, keys=script_keys, args=args
        )
        return Started(
            n=int(n),
            aborted=bool(aborted),
            previous_worker=keys.text(worker_before) or None,
            previous_started_at=int(started_before) if started_before else None,
        )

    def uncount_attempt(self, job_id: str) -> None:
        """Take back the attempt ``start_attempt`` just counted (it is about to wait, not run:
        a worker dying while it waits must not charge it a crash)."""
        self.client.decr(keys.attempt_counter_key(job_id))

    def record_lost_attempts(self, job_id: str, attempts: list[dict[str, Any]]) -> None:
        """Write attempts whose worker died (``crashed``) now, each only where the timeline has
        no entry for it yet: a later start finds the same attempts lost again, knowing less
        about the earlier ones. The crash path's round trip, not every job's."""
        key = keys.attempts_key(job_id)
        pipe = self.client.pipeline(transaction=False)
        for attempt in attempts:
            pipe.hsetnx(key, str(attempt["n"]), json.dumps(attempt))
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    # --- buffered writes ---------------------------------------------------------------------

    def record_attempt(self, job_id: str, attempt: dict[str, Any]) -> None:
        """Buffer one finished attempt of the timeline."""
        self._enqueue(("attempt", job_id, attempt))

    def record_state(
        self, job_id: str, fields: Mapping[str, Any], *, enqueued_at: int | None = None
    ) -> None:
        """Buffer a change of a job's state hash (and of its place in the job index);
        ``enqueued_at`` (the message timestamp) indexes a job the index does not know yet."""
        self._enqueue(("state", job_id, fields, enqueued_at))

    def count_outcome(self, outcome: str, category: str | None, *, at_ms: int) -> None:
        """Buffer one attempt outcome (``succeeded`` or ``failed``, by category) for the
        per-minute counts the dashboard charts; written with the next flush, no round trip."""
        self._enqueue(("count", f"{outcome}:{category or ''}", at_ms // 60_000))

    def _enqueue(self, change: tuple[Any, ...]) -> None:
        with self._lock:
            self._buffer.append(change)
            full = len(self._buffer) >= self.max_buffer
        if full or self._thread is None:
            self._wake.set()
            if self._thread is None:
                self.flush()

    def flush(self) -> None:
        """Write every buffered change now, in one pipeline. Returns only once everything
        buffered before the call is in Redis, even if the background flusher took it."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            try:
                self._write(batch)
            except redis.exceptions.NoScriptError:
                # Redis restarted and forgot its scripts: load them, write the batch again
                # (every write in it is idempotent).
                self._scripts.load(self.client)
                self._write(batch)
        except redis.RedisError:
            logger.warning("Could not write %d history change(s); retrying.", len(batch))
            with self._lock:
                self._buffer[:0] = batch

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        # Outcome counts are summed first: a few increments per flush, not three per job.
        counts: collections.Counter[tuple[int, str]] = collections.Counter()
        for kind, job_id, *change in batch:
            if kind == "attempt":
                key = keys.attempts_key(job_id)
                pipe.hset(key, str(change[0]["n"]), json.dumps(change[0]))
                pipe.expire(key, self.ttl_s)
            elif kind == "count":
                # (for counts, "job_id" is the field "<outcome>:<category>" and change the minute)
                counts[change[0], job_id] += 1
            else:
                call_keys, args = self._transition_call(job_id, change[0], change[1])
                # EVALSHA without redis-py's SCRIPT EXISTS round trip per pipeline: the script
                # was loaded when the flusher started, and a NoScriptError loads it again.
                pipe.evalsha(self._scripts.transition.sha, len(call_keys), *call_keys, *args)
        totals: collections.Counter[str] = collections.Counter()
        for (minute, field), n in counts.items():
            minute_key = keys.outcomes_minute_key(minute)
            pipe.hincrby(minute_key, field, n)
            pipe.expire(minute_key, OUTCOME_COUNTS_TTL_S)
            totals[field] += n
        for field, n in totals.items():
            pipe.hincrby(keys.OUTCOMES_TOTAL_KEY, field, n)
        pipe.execute()

    def _transition_call(
        self, job_id: str, fields: Mapping[str, Any], enqueued_at: int | None
    ) -> tuple[list[str], list[Any]]:
        pairs = [item for field in fields.items() for item in field]
        args = [job_id, self.ttl_s, enqueued_at or "", keys.JOB_INDEX_PREFIX, *pairs]
        return [keys.job_key(job_id)], args

    def start(self) -> None:
        """Start the background flusher (once per worker process)."""
        if self._thread is not None:
            return
        try:
            self._scripts.load(self.client)
        except redis.RedisError:
            logger.warning("Could not load the history scripts yet; they load on first use.")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="evalq-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write the outcomes posted and not landed yet (for up to ``DRAIN_TIMEOUT_S``), stop
        the flusher and write what is left."""
        left = self.commits.drain(DRAIN_TIMEOUT_S)
        if left:
            logger.critical("%d job outcome(s) not written: Redis unreachable; their jobs run "
                            "again after the heartbeat timeout", left)  # fmt: skip
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()
            self._trim_on_schedule()

    def _trim_on_schedule(self) -> None:
        """Trim the job index by age every ``trim_interval_s``: one ``SET NX`` per interval and
        process, and the trim itself in whichever process takes the lock."""
        if time.monotonic() < self._next_trim:
            return
        self._next_trim = time.monotonic() + self.trim_interval_s
        try:
            lock = keys.JOB_INDEX_TRIM_LOCK
            if not self.client.set(lock, 1, nx=True, ex=max(int(self.trim_interval_s), 1)):
                return
            for _ in range(10):  # at most 10 budgets' worth per interval
                if not trim_job_index(self.client, max_age_s=self.ttl_s, now_ms=now_ms())[1]:
                    break
        except redis.RedisError:
            logger.warning("Could not trim the job index; trying again later.", exc_info=True)

    # --- reads -------------------------------------------------------------------------------

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's attempt timeline, in attempt order."""
        raw = self.client.hgetall(keys.attempts_key(job_id))
        entries = [json.loads(v) for v in raw.values()]  # type: ignore[union-attr]
        return sorted(entries, key=lambda a: int(a["n"]))

    def show(self, job_id: str) -> dict[str, Any] | None:
        """The ``evalq jobs show`` document of a job, or None when unknown."""
        return self.show_many([job_id])[0]

    def show_many(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        """``show`` for many jobs, in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job_key(job_id))
            pipe.hgetall(keys.attempts_key(job_id))
        replies = pipe.execute()
        return [
            _document(job_id, replies[2 * i], replies[2 * i + 1])
            for i, job_id in enumerate(job_ids)
        ]


def _document(
    job_id: str, state_raw: dict[Any, Any], attempts_raw: dict[Any, Any]
) -> dict[str, Any] | None:
    if not state_raw:
        return None
    state = {keys.text(k): keys.text(v) for k, v in state_raw.items()}
    attempts = sorted((json.loads(v) for v in attempts_raw.values()), key=lambda a: a["n"])
    document: dict[str, Any] = {
        "job_id": job_id,
        "queue": state.get("queue"),
        "actor": state.get("actor"),
        "state": state.get("state"),
        "attempts": attempts,
    }
    for extra in (
        "category",
        "dead_letter_id",
        "enqueued_at",
        "finished_at",
        "error_type",
        "error_message",
    ):
        if extra in state:
            document[extra] = state[extra]
    return document
