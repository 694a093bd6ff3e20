"""The application-facing API: submit evaluations, follow jobs, read results.

Everything is validated before anything is enqueued: a bad request raises pydantic's
``ValidationError`` naming the field, and nothing from that call reaches Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from pydantic import TypeAdapter

import workers
from middleware.state import keys
from middleware.state.aborts import AbortOutcome, request_abort
from middleware.state.jobs import TERMINAL_STATES, now_ms
from middleware.state.keys import job_key
from middleware.state.scripts import scripts_for
from workers.actors import LANE_ACTORS
from workers.deduplication import (
    Dedup,
    DedupMode,
    Submission,
    resolve_dedup,
)
from workers.evaluations.models import EvaluationRequest, EvaluationResult
from workers.lanes import SubmitLane
from workers.results import ResultStore

Lane = SubmitLane

#: Submissions per round trip to Redis in ``submit_many``.
SUBMIT_CHUNK = 500

_REQUESTS = TypeAdapter(list[EvaluationRequest])


class JobFailed(Exception):
    """The job ended without a result (dead-lettered, aborted or dropped)."""

    def __init__(self, job_id: str, state: str, error: str | None) -> None:
        detail = f": {error}" if error else ""
        super().__init__(f"job {job_id} ended as {state}{detail}")
        self.job_id = job_id
        self.state = state
        self.error = error


@dataclass(frozen=True)
class JobHandle:
    """A submitted job. ``deduplicated`` is true when the submission was a duplicate and this is
    the earlier job it duplicates (see ``workers.deduplication``)."""

    id: str
    deduplicated: bool = False

    def info(self) -> dict[str, str]:
        """The job's record as stored in Redis (empty when unknown or expired)."""
        raw = _redis().hgetall(job_key(self.id))
        return {keys.text(k): keys.text(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def state(self) -> str | None:
        """``queued``, ``running``, ``retrying``, ``succeeded``, ``dead_lettered``, ``aborted``,
        ``dropped``; None when the job is unknown."""
        state = _redis().hget(job_key(self.id), "state")
        return None if state is None else keys.text(state)

    def result(self, timeout: float = 30.0, *, poll_s: float = 0.05) -> EvaluationResult:
        """Wait for the job to finish and return its result.

        Raises:
          JobFailed: the job ended without a result.
          TimeoutError: the job had not finished after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            state = info.get("state")
            if state == "succeeded":
                stored = _results().get(info["evaluation_uuid"], info["target_uuid"])
                if stored is None:
                    raise JobFailed(self.id, "succeeded", "its result has expired")
                return stored
            if state in TERMINAL_STATES:
                raise JobFailed(self.id, state, info.get("error_message"))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {state or 'unknown'} after {timeout}s")
            time.sleep(poll_s)


def submit_evaluation(
    request: EvaluationRequest | Mapping[str, Any],
    *,
    lane: Lane = "batch",
    idempotency_key: str | None = None,
    dedup: DedupMode | None = None,
    dedup_window_s: float | None = None,
) -> JobHandle:
    """Validate ``request`` and enqueue it on ``lane``, unless it duplicates an earlier job.

    The idempotency key is ``idempotency_key``, else the request's own ``idempotency_key``, else
    a stable hash of its evaluation and target uuids. ``dedup`` says when an earlier job holding
    that key makes this submission its duplicate: ``until_finished`` (while the job is queued,
    running or retrying), ``until_started`` (while it is queued) or ``window`` (the job was
    submitted less than ``dedup_window_s`` seconds ago, whatever its state). None:
    ``EVALQ_DEDUP_MODE`` and ``EVALQ_DEDUP_WINDOW_S`` (default ``until_finished``). A
    duplicate's handle is the earlier job's, with ``deduplicated`` true.

    Raises:
      pydantic.ValidationError: the request is invalid; nothing is enqueued.
      DedupError: ``dedup`` and ``dedup_window_s`` do not fit together; nothing is enqueued.
    """
    chosen = dedup_for(dedup, dedup_window_s)
    parsed = (
        request
        if isinstance(request, EvaluationRequest)
        else EvaluationRequest.model_validate(request)
    )
    return _enqueue([parsed], lane=lane, idempotency_keys=[idempotency_key], dedup=chosen)[0]


def submit_many(
    requests: Iterable[EvaluationRequest | Mapping[str, Any]],
    *,
    lane: Lane = "batch",
    dedup: DedupMode | None = None,
    dedup_window_s: float | None = None,
) -> list[JobHandle]:
    """Validate every request first (a ``ValidationError`` names the index and field and nothing
    is enqueued), then enqueue them all on ``lane``, in order, deduplicated as
    ``submit_evaluation`` does (each by its own ``idempotency_key`` or the default one).

    Requests go to Redis ``SUBMIT_CHUNK`` at a time, one round trip per chunk. Each one is
    claimed and enqueued atomically, so a failure part-way leaves every request either enqueued
    or not at all; submitting the list again returns the enqueued ones as duplicates (while
    they are, in the default mode, not finished).
    """
    chosen = dedup_for(dedup, dedup_window_s)
    parsed = _REQUESTS.validate_python(list(requests))
    return _enqueue(parsed, lane=lane, idempotency_keys=[None] * len(parsed), dedup=chosen)


def dedup_for(mode: str | None, window_s: float | None) -> Dedup:
    """The ``Dedup`` of a submission: its arguments, else the configured defaults (raises
    ``DedupError`` when they do not fit together)."""
    settings = workers.settings
    return resolve_dedup(
        mode,
        window_s,
        default_mode=settings.dedup_mode,
        default_window_s=settings.dedup_window_s,
        max_window_s=settings.job_ttl_s,
    )


def _enqueue(
    requests: list[EvaluationRequest],
    *,
    lane: Lane,
    idempotency_keys: list[str | None],
    dedup: Dedup,
) -> list[JobHandle]:
    # Messages are written to the broker's Redis keys by the submit script, not by broker.enqueue:
    # claiming the key, recording the job as queued and pushing its message are one atomic step,
    # and a chunk of them is one round trip. No evalq middleware has an enqueue hook that this
    # skips (JobHistory's would only write the "queued" state the script writes).
    if lane not in LANE_ACTORS:
        raise ValueError(f"lane must be one of {', '.join(LANE_ACTORS)}, not {lane!r}")
    actor = LANE_ACTORS[lane]
    client = _redis()
    script = scripts_for(client).submit
    ttl = workers.settings.job_ttl_s
    handles: list[JobHandle] = []
    for start in range(0, len(requests), SUBMIT_CHUNK):
        chunk = zip(
            requests[start : start + SUBMIT_CHUNK],
            idempotency_keys[start : start + SUBMIT_CHUNK],
            strict=True,
        )
        now = now_ms()
        calls = [
            _submission(actor, request, key).script_call(dedup, now_ms=now, job_ttl_s=ttl)
            for request, key in chunk
        ]
        if len(calls) == 1:
            replies = [script(keys=calls[0][0], args=calls[0][1])]
        else:
            pipe = client.pipeline(transaction=False)
            for script_keys, args in calls:
                script(keys=script_keys, args=args, client=pipe)
            replies = pipe.execute()
        handles.extend(
            JobHandle(keys.text(job_id), deduplicated=bool(duplicate))
            for job_id, duplicate in replies
        )
    return handles


def _submission(
    actor: dramatiq.Actor[Any, Any], request: EvaluationRequest, explicit_key: str | None
) -> Submission:
    key = explicit_key or request.idempotency_key or request.default_idempotency_key()
    # Like RedisBroker.enqueue: every delivery has its own redis_message_id.
    message = actor.message(request.model_dump(mode="json")).copy(
        options={"redis_message_id": str(uuid.uuid4())}
    )
    evaluation_uuid, target_uuid = request.result_key
    return Submission(
        key=key,
        job_id=message.message_id,
        queue=message.queue_name,
        actor=message.actor_name,
        redis_message_id=message.options["redis_message_id"],
        data=message.encode(),
        evaluation_uuid=evaluation_uuid,
        target_uuid=target_uuid,
    )


def _redis() -> redis.Redis:
    return workers.broker.client  # type: ignore[no-any-return]


def _results() -> ResultStore:
    return ResultStore(_redis(), ttl_s=workers.settings.result_ttl_s)


def states(job_ids: list[str]) -> dict[str, str | None]:
    """The current state of each job, read in one pipelined round trip."""
    pipe = _redis().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(job_key(job_id), "state")
    return {
        job_id: None if state is None else keys.text(state)
        for job_id, state in zip(job_ids, pipe.execute(), strict=True)
    }


def wait_all(
    job_ids: list[str],
    *,
    timeout: float,
    poll_s: float = 0.2,
    on_update: Callable[[dict[str, str | None]], None] | None = None,
) -> dict[str, str | None]:
    """Poll until every job is in a final state or ``timeout`` seconds pass; returns the states."""
    deadline = time.monotonic() + timeout
    while True:
        current = states(job_ids)
        if on_update is not None:
            on_update(current)
        if all(state in TERMINAL_STATES for state in current.values()):
            return current
        if time.monotonic() >= deadline:
            return current
        time.sleep(poll_s)


def abort(job_id: str) -> AbortOutcome:
    """Abort a job: a queued or delayed one never runs, a running one is interrupted in its
    worker thread; both end ``aborted`` in the DLQ, never retried. A finished or unknown job is
    left as it is (``outcome.requested`` is False); ``outcome.message`` says which."""
    return request_abort(_redis(), job_id, ttl_s=workers.settings.job_ttl_s)
