"""Job history: each job's state and attempt timeline in Redis.

The worker's hot path pays one synchronous round trip per attempt: the attempt counter and the
"running" record go in one pipeline when the attempt starts (so a crash is visible). Outcomes are
buffered per process and written in pipelined batches by a background thread; the decisions that
must be durable before the broker forgets a message (a retry, a dead letter) are written by the
same atomic script that settles the message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis

from middleware.core.redaction import redact_text
from middleware.state import keys

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "retrying", "succeeded", "dead_lettered", "aborted", "dropped")
ACTIVE_STATES = frozenset({"queued", "running", "retrying"})
TERMINAL_STATES = frozenset({"succeeded", "dead_lettered", "aborted", "dropped"})

#: How long the per-minute outcome counts are kept, in seconds (the dashboard charts one hour).
OUTCOME_COUNTS_TTL_S = 2 * 3600

#: Outcomes of one attempt, as the timeline records them.
OUTCOMES = ("succeeded", "retried", "throttled", "dead_lettered", "dropped", "crashed", "aborted")


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return int(time.time() * 1000)


def attempt_record(
    n: int,
    *,
    started_at: int | None,
    finished_at: int | None = None,
    outcome: str | None = None,
    category: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """One entry of a job's attempt timeline (the ``evalq jobs show`` contract)."""
    return {
        "n": n,
        "started_at": started_at,
        "finished_at": finished_at,
        "outcome": outcome,
        "category": category,
        "error_type": error_type,
        "error_message": None if error_message is None else redact_text(error_message),
    }


class History:
    """Reads and writes job states and attempt timelines.

    Parameters:
      client(redis.Redis): The Redis client (shared with the broker).
      ttl_s(int): How long a job's records are kept after their last change, in seconds.
      flush_interval_s(float): How often buffered writes are flushed, in seconds.
      max_buffer(int): Flush early once this many writes are buffered.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_s: int = 7 * 24 * 3600,
        flush_interval_s: float = 0.1,
        max_buffer: int = 500,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self._buffer: list[tuple[str, str, Mapping[str, Any]]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- synchronous writes ------------------------------------------------------------------

    def record_enqueued(self, job_id: str, *, queue: str, actor: str) -> None:
        """Mark a freshly enqueued job ``queued`` (the submitter's path, not the worker's)."""
        pipe = self.client.pipeline(transaction=False)
        self._write_state(
            pipe,
            job_id,
            {"state": "queued", "queue": queue, "actor": actor, "enqueued_at": now_ms()},
        )
        pipe.execute()

    def start_attempt(
        self, job_id: str, *, queue: str, actor: str, running_until: int
    ) -> tuple[int, bool]:
        """Count a new attempt and record it as running, in one round trip.

        ``running_until`` (ms since the epoch) is when the attempt's time limit has certainly
        passed: a job still ``running`` after it is known to be dead. Returns the attempt's
        number and whether an operator asked to abort the job.
        """
        started = now_ms()
        counter = keys.attempt_counter_key(job_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(counter)
        pipe.expire(counter, self.ttl_s)
        pipe.hset(
            keys.job_key(job_id),
            mapping={
                "state": "running",
                "queue": queue,
                "actor": actor,
                "started_at": started,
                "running_until": running_until,
            },
        )
        pipe.expire(keys.job_key(job_id), self.ttl_s)
        pipe.exists(keys.abort_key(job_id))
        replies = pipe.execute()
        # The timeline entry is written with the outcome; a crash leaves only the counter and
        # the "running" state behind, which is exactly what crash detection reads.
        return int(replies[0]), bool(replies[-1])

    # --- buffered writes ---------------------------------------------------------------------

    def record_attempt(self, job_id: str, attempt: dict[str, Any]) -> None:
        """Buffer one finished attempt of the timeline."""
        self._enqueue(keys.attempts_key(job_id), "attempt", attempt)

    def record_state(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Buffer a change of a job's state hash."""
        self._enqueue(keys.job_key(job_id), "state", fields)

    def count_outcome(self, outcome: str, category: str | None, *, at_ms: int) -> None:
        """Buffer one attempt outcome (``succeeded`` or ``failed``, by category) for the
        per-minute counts the dashboard charts; written with the next flush, no round trip."""
        field = f"{outcome}:{category or ''}"
        self._enqueue(keys.outcomes_minute_key(at_ms // 60_000), "count", {"field": field})

    def _enqueue(self, key: str, kind: str, value: Mapping[str, Any]) -> None:
        with self._lock:
            self._buffer.append((key, kind, value))
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
        pipe = self.client.pipeline(transaction=False)
        for key, kind, value in batch:
            if kind == "attempt":
                pipe.hset(key, str(value["n"]), json.dumps(value))
            elif kind == "count":
                pipe.hincrby(key, value["field"], 1)
                pipe.expire(key, OUTCOME_COUNTS_TTL_S)
                pipe.hincrby(keys.OUTCOMES_TOTAL_KEY, value["field"], 1)
                continue
            else:
                pipe.hset(key, mapping=dict(value))
            pipe.expire(key, self.ttl_s)
        try:
            pipe.execute()
        except redis.RedisError:
            logger.warning("Could not write %d history change(s); retrying.", len(batch))
            with self._lock:
                self._buffer[:0] = batch

    def start(self) -> None:
        """Start the background flusher (once per worker process)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="evalq-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and write what is left."""
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

    # --- reads -------------------------------------------------------------------------------

    def _write_state(self, pipe: Any, job_id: str, fields: Mapping[str, Any]) -> None:
        pipe.hset(keys.job_key(job_id), mapping=dict(fields))
        pipe.expire(keys.job_key(job_id), self.ttl_s)

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
