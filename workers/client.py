"""The application-facing API: submit evaluations, follow jobs, read results.

Everything is validated before anything is enqueued: a bad request raises pydantic's
``ValidationError`` naming the field, and nothing from that call reaches Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis
from dramatiq.broker import Broker
from pydantic import TypeAdapter

import workers
from middleware.history import TERMINAL_STATES
from middleware.keys import JOB_PREFIX, job_key
from workers.actors import LANE_ACTORS
from workers.evaluations.models import EvaluationRequest, EvaluationResult
from workers.results import ResultStore

Lane = Literal["live", "batch"]

IDEMPOTENCY_KEY_PREFIX = "evalq:idem:"

#: A claim whose job never reached the queue (its submitter died in between) is taken over
#: after this long, in milliseconds.
STALE_CLAIM_MS = 60_000

# Atomically: reuse the job holding this idempotency key while it is still active (or still
# being enqueued), else claim the key for the new job and create its record.
_CLAIM = """
local existing = redis.call('GET', KEYS[1])
if existing then
  local job = ARGV[3] .. existing
  local state = redis.call('HGET', job, 'state')
  if state == 'queued' or state == 'running' or state == 'retrying' then
    return {existing, 1}
  end
  if not state then
    local claimed = tonumber(redis.call('HGET', job, 'claimed_at') or '0')
    if claimed > tonumber(ARGV[7]) - tonumber(ARGV[8]) then
      return {existing, 1}
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], 'evaluation_uuid', ARGV[4], 'target_uuid', ARGV[5],
           'idempotency_key', ARGV[6], 'claimed_at', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {ARGV[1], 0}
"""

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
    """A submitted job. ``deduplicated`` is true when an earlier, still active job was returned."""

    id: str
    deduplicated: bool = False

    def info(self) -> dict[str, str]:
        """The job's record as stored in Redis (empty when unknown or expired)."""
        raw = _redis().hgetall(job_key(self.id))
        return {_text(k): _text(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def state(self) -> str | None:
        """``queued``, ``running``, ``retrying``, ``succeeded``, ``dead_lettered``, ``aborted``,
        ``dropped``; None when the job is unknown."""
        state = _redis().hget(job_key(self.id), "state")
        return None if state is None else _text(state)

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
) -> JobHandle:
    """Validate ``request`` and enqueue it on ``lane``; returns the job or its active duplicate."""
    parsed = (
        request
        if isinstance(request, EvaluationRequest)
        else EvaluationRequest.model_validate(request)
    )
    return _enqueue([parsed], lane=lane, idempotency_keys=[idempotency_key])[0]


def submit_many(
    requests: Iterable[EvaluationRequest | Mapping[str, Any]], *, lane: Lane = "batch"
) -> list[JobHandle]:
    """Validate every request first (a ``ValidationError`` names the index and field and nothing
    is enqueued), then enqueue them all on ``lane``, in order."""
    parsed = _REQUESTS.validate_python(list(requests))
    return _enqueue(parsed, lane=lane, idempotency_keys=[None] * len(parsed))


def _enqueue(
    requests: list[EvaluationRequest], *, lane: Lane, idempotency_keys: list[str | None]
) -> list[JobHandle]:
    if lane not in LANE_ACTORS:
        raise ValueError(f"lane must be one of {', '.join(LANE_ACTORS)}, not {lane!r}")
    actor = LANE_ACTORS[lane]
    broker: Broker = workers.broker
    client = _redis()
    claim = client.register_script(_CLAIM)
    ttl = workers.settings.job_ttl_s
    handles = []
    for request, explicit_key in zip(requests, idempotency_keys, strict=True):
        key = explicit_key or request.idempotency_key or request.default_idempotency_key()
        message = actor.message(request.model_dump(mode="json"))
        evaluation_uuid, target_uuid = request.result_key
        job_id, existed = claim(
            keys=[IDEMPOTENCY_KEY_PREFIX + key, job_key(message.message_id)],
            args=[
                message.message_id,
                ttl,
                JOB_PREFIX,
                evaluation_uuid,
                target_uuid,
                key,
                int(time.time() * 1000),
                STALE_CLAIM_MS,
            ],
        )
        if existed:
            handles.append(JobHandle(_text(job_id), deduplicated=True))
            continue
        try:
            broker.enqueue(message)
        except BaseException:
            client.delete(IDEMPOTENCY_KEY_PREFIX + key, job_key(message.message_id))
            raise
        handles.append(JobHandle(message.message_id))
    return handles


def _redis() -> redis.Redis:
    return workers.broker.client  # type: ignore[no-any-return]


def _results() -> ResultStore:
    return ResultStore(_redis(), ttl_s=workers.settings.result_ttl_s)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def states(job_ids: list[str]) -> dict[str, str | None]:
    """The current state of each job, read in one pipelined round trip."""
    pipe = _redis().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(job_key(job_id), "state")
    return {
        job_id: None if state is None else _text(state)
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
