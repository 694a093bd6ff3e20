"""The application-facing API: submit evaluations and jobs, follow them, read results, abort.

``Evalq(settings)`` is one configuration (one Redis, one set of TTLs and dedup defaults): an
application may hold several (two Redis URLs in one process, tests). ``Evalq.from_env()`` reads
the environment once. The module-level functions (``submit_evaluation``, ``submit_many``,
``abort``, ...) are shortcuts to one client built from the environment on first use.

Everything is validated before anything is enqueued: a bad request raises pydantic's
``ValidationError`` naming the field, and nothing from that call reaches Redis. Redis is found
as everywhere in evalq (``workers.local_redis``): ``EVALQ_REDIS_URL``, else a running
``evalq up``, else ``NoRedisError``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis
from pydantic import TypeAdapter

from config.settings import Settings, read_settings
from middleware.state import keys
from middleware.state.aborts import AbortOutcome, request_abort
from middleware.state.connections import TRANSIENT, while_redis_away
from middleware.state.connections import redis_client as connect_redis
from middleware.state.job_states import TERMINAL_STATES
from middleware.state.jobs import now_ms
from middleware.state.keys import job_key
from middleware.state.replication import ReplicaWait
from middleware.state.scripts import scripts_for
from workers.deduplication import Dedup, DedupMode, Submission, resolve_dedup
from workers.evaluations.models import EvaluationRequest, EvaluationResult
from workers.lanes import BATCH_QUEUE, LIVE_QUEUE, SubmitLane
from workers.local_redis import find_redis_url
from workers.request_size import RequestTooLarge as RequestTooLarge  # re-exported for callers
from workers.request_size import check_sizes
from workers.results import ResultStore

Lane = SubmitLane

#: Submissions per round trip to Redis in ``submit_many``.
SUBMIT_CHUNK = 500
#: How long a submission keeps trying while Redis is unreachable (a restart, a Sentinel
#: failover), in seconds, before its error reaches the caller.
SUBMIT_PATIENCE_S = 30.0
#: The actor and queue of each evaluation lane.
LANE_ACTORS: dict[str, tuple[str, str]] = {
    "live": ("run_live_evaluation", LIVE_QUEUE),
    "batch": ("run_batch_evaluation", BATCH_QUEUE),
}

_REQUESTS = TypeAdapter(list[EvaluationRequest])


class JobFailed(Exception):
    """The job ended without a result (dead-lettered, aborted or dropped).

    Attributes: ``job_id``, ``state``, ``error`` (the last error's message), ``category`` (the
    error category that ended it) and ``dead_letter_id`` (its record, for ``evalq dlq show``);
    each None when the job's record does not say.
    """

    def __init__(
        self,
        job_id: str,
        state: str,
        error: str | None,
        *,
        category: str | None = None,
        dead_letter_id: str | None = None,
    ) -> None:
        detail = f" ({category})" if category else ""
        detail += f": {error}" if error else ""
        detail += f"; dead letter {dead_letter_id}" if dead_letter_id else ""
        super().__init__(f"job {job_id} ended as {state}{detail}")
        self.job_id = job_id
        self.state = state
        self.error = error
        self.category = category
        self.dead_letter_id = dead_letter_id


class Evalq:
    """One evalq configuration: submit, follow, read and abort jobs on its Redis.

    Parameters:
      settings: TTLs, dedup defaults and how to find Redis.
      redis_client: The Redis to use (default: found from ``settings``; ``NoRedisError`` when
        there is none).
    """

    def __init__(self, settings: Settings, *, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis_client or connect_redis(find_redis_url(settings), settings)
        self.results = ResultStore(self.redis, ttl_s=settings.result_ttl_s)
        self._script = scripts_for(self.redis).submit
        # A submission returns once a replica has it: a failover cannot take back a job id.
        self._replicas = ReplicaWait(self.redis, settings.redis_replica_wait_ms)

    @classmethod
    def from_env(cls, **overrides: Any) -> Evalq:
        """A client configured from the environment (``overrides`` win); raises
        ``SettingsError`` or ``NoRedisError``."""
        return cls(read_settings(**overrides))

    # --- submitting ----------------------------------------------------------------------

    def submit_evaluation(
        self,
        request: EvaluationRequest | Mapping[str, Any],
        *,
        lane: Lane = "batch",
        idempotency_key: str | None = None,
        dedup: DedupMode | None = None,
        dedup_window_s: float | None = None,
    ) -> JobHandle:
        """Validate ``request`` and enqueue it on ``lane``, unless it duplicates an earlier job.

        The idempotency key is ``idempotency_key``, else the request's own
        ``idempotency_key``, else a stable hash of its evaluation and target uuids. ``dedup``
        says when an earlier job holding that key makes this submission its duplicate:
        ``until_finished`` (while the job is queued, running or retrying), ``until_started``
        (while it is queued) or ``window`` (the job was submitted less than ``dedup_window_s``
        seconds ago, whatever its state). None: ``EVALQ_DEDUP_MODE`` and
        ``EVALQ_DEDUP_WINDOW_S`` (default ``until_finished``). A duplicate's handle is the
        earlier job's, with ``deduplicated`` true.

        Raises:
          pydantic.ValidationError: the request is invalid; nothing is enqueued.
          RequestTooLarge: the request is over ``EVALQ_MAX_REQUEST_BYTES``; nothing is enqueued.
          DedupError: ``dedup`` and ``dedup_window_s`` do not fit together; nothing is enqueued.
        """
        chosen = self.dedup_for(dedup, dedup_window_s)
        parsed = (
            request
            if isinstance(request, EvaluationRequest)
            else EvaluationRequest.model_validate(request)
        )
        check_sizes([parsed], self.settings.max_request_bytes)
        return self._enqueue([_evaluation(parsed, lane, idempotency_key)], chosen)[0]

    def submit_many(
        self,
        requests: Iterable[EvaluationRequest | Mapping[str, Any]],
        *,
        lane: Lane = "batch",
        dedup: DedupMode | None = None,
        dedup_window_s: float | None = None,
    ) -> list[JobHandle]:
        """Validate every request first (a ``ValidationError`` names the index and field and
        nothing is enqueued; so does ``RequestTooLarge`` for one over ``EVALQ_MAX_REQUEST_BYTES``),
        then enqueue them all on ``lane``, in order, deduplicated as
        ``submit_evaluation`` does (each by its own ``idempotency_key`` or the default one).

        Requests go to Redis ``SUBMIT_CHUNK`` at a time, one round trip per chunk. Each one is
        claimed and enqueued atomically, so a failure part-way leaves every request either
        enqueued or not at all; submitting the list again returns the enqueued ones as
        duplicates (while they are, in the default mode, not finished).
        """
        chosen = self.dedup_for(dedup, dedup_window_s)
        parsed = _REQUESTS.validate_python(list(requests))
        check_sizes(parsed, self.settings.max_request_bytes)
        return self._enqueue([_evaluation(r, lane, None) for r in parsed], chosen)

    def submit_job(
        self,
        actor: dramatiq.Actor[Any, Any] | str,
        *args: Any,
        queue: str | None = None,
        idempotency_key: str,
        dedup: DedupMode | None = None,
        dedup_window_s: float | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Enqueue a job of any actor (an application's own) with ``args``/``kwargs``, unless
        a job holding ``idempotency_key`` makes it a duplicate (see ``submit_evaluation``).

        ``actor`` is the actor or its name; ``queue`` defaults to the actor's queue (required
        with a name). The job gets the error policy, history, abort and dead letters of any
        evalq job.
        """
        chosen = self.dedup_for(dedup, dedup_window_s)
        if isinstance(actor, str):
            if queue is None:
                raise ValueError("submit_job with an actor name needs its queue")
            name = actor
        else:
            name, queue = actor.actor_name, queue or actor.queue_name
        message = dramatiq.Message(
            queue_name=queue, actor_name=name, args=args, kwargs=kwargs, options={}
        )
        return self._enqueue([(message, idempotency_key, "", "")], chosen)[0]

    def dedup_for(self, mode: str | None, window_s: float | None) -> Dedup:
        """The ``Dedup`` of a submission: its arguments, else the configured defaults (raises
        ``DedupError`` when they do not fit together)."""
        return resolve_dedup(
            mode,
            window_s,
            default_mode=self.settings.dedup_mode,
            default_window_s=self.settings.dedup_window_s,
            max_window_s=self.settings.job_ttl_s,
        )

    def _enqueue(self, jobs: Sequence[_Job], dedup: Dedup) -> list[JobHandle]:
        # Messages are written to the broker's Redis keys by the submit script, not by
        # broker.enqueue: claiming the key, recording the job as queued and pushing its message
        # are one atomic step, and a chunk of them is one round trip. No evalq middleware has
        # an enqueue hook that this skips (JobHistory's would only write the "queued" state the
        # script writes).
        ttl = self.settings.job_ttl_s
        handles: list[JobHandle] = []
        for start in range(0, len(jobs), SUBMIT_CHUNK):
            now = now_ms()
            calls = [
                _submission(*job).script_call(dedup, now_ms=now, job_ttl_s=ttl)
                for job in jobs[start : start + SUBMIT_CHUNK]
            ]
            # A chunk that fails part-way is sent again as it is: the same job ids and keys, so
            # the script reports the jobs it enqueued the first time as enqueued, not again.
            replies = while_redis_away(
                lambda calls=calls: self._run_submits(calls), patience_s=SUBMIT_PATIENCE_S
            )
            handles.extend(
                JobHandle(keys.text(job_id), deduplicated=bool(duplicate), client=self)
                for job_id, duplicate in replies
            )
        return handles

    def _run_submits(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        try:
            tail = self._replicas.tail()
            if len(calls) == 1 and not tail:
                return [self._script(keys=calls[0][0], args=calls[0][1])]
            pipe = self.redis.pipeline(transaction=False)
            for script_keys, args in calls:
                self._script(keys=script_keys, args=args, client=pipe)
            for command in tail:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
        except TRANSIENT:
            self._replicas.forget()
            raise
        self._replicas.check(tail, replies[len(calls) :])
        submitted = replies[: len(calls)]
        error = next((r for r in submitted if isinstance(r, Exception)), None)
        if error is not None:
            raise error
        return submitted

    # --- following -----------------------------------------------------------------------

    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job."""
        return JobHandle(job_id, client=self)

    def info(self, job_id: str) -> dict[str, str]:
        """The job's record as stored in Redis (empty when unknown or expired)."""
        raw = self.redis.hgetall(job_key(job_id))
        return {keys.text(k): keys.text(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def state(self, job_id: str) -> str | None:
        """``queued``, ``running``, ``retrying``, ``succeeded``, ``dead_lettered``,
        ``aborted``, ``dropped``; None when the job is unknown."""
        state = self.redis.hget(job_key(job_id), "state")
        return None if state is None else keys.text(state)

    def states(self, job_ids: list[str]) -> dict[str, str | None]:
        """The current state of each job, read in one pipelined round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(job_key(job_id), "state")
        return {
            job_id: None if state is None else keys.text(state)
            for job_id, state in zip(job_ids, pipe.execute(), strict=True)
        }

    def wait_all(
        self,
        job_ids: list[str],
        *,
        timeout: float,
        poll_s: float = 0.2,
        on_update: Callable[[dict[str, str | None]], None] | None = None,
    ) -> dict[str, str | None]:
        """Poll until every job is in a final state or ``timeout`` seconds pass; returns the
        states."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.states(job_ids)
            if on_update is not None:
                on_update(current)
            if all(state in TERMINAL_STATES for state in current.values()):
                return current
            if time.monotonic() >= deadline:
                return current
            time.sleep(poll_s)

    def result(
        self, job_id: str, timeout: float = 30.0, *, poll_s: float = 0.05
    ) -> EvaluationResult:
        """Wait for an evaluation job to finish and return its result.

        Raises:
          JobFailed: the job ended without a result.
          TimeoutError: the job had not finished after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = self.info(job_id)
            state = info.get("state")
            if state == "succeeded":
                stored = self.results.get(info["evaluation_uuid"], info["target_uuid"])
                if stored is None:
                    raise JobFailed(job_id, "succeeded", "its result has expired")
                return stored
            if state in TERMINAL_STATES:
                raise JobFailed(
                    job_id,
                    state,
                    info.get("error_message"),
                    category=info.get("category"),
                    dead_letter_id=info.get("dead_letter_id"),
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {state or 'unknown'} after {timeout}s")
            time.sleep(poll_s)

    def abort(self, job_id: str) -> AbortOutcome:
        """Abort a job: a queued or delayed one never runs, a running one is interrupted in its
        worker thread; both end ``aborted`` in the DLQ, never retried. A finished or unknown
        job is left as it is (``outcome.requested`` is False); ``outcome.message`` says
        which."""
        return request_abort(self.redis, job_id, ttl_s=self.settings.job_ttl_s)

    def close(self) -> None:
        """Close this client's Redis connections."""
        self.redis.close()


@dataclass(frozen=True)
class JobHandle:
    """A submitted job. ``deduplicated`` is true when the submission was a duplicate and this is
    the earlier job it duplicates (see ``workers.deduplication``). ``client`` is the ``Evalq``
    it belongs to (default: the one built from the environment)."""

    id: str
    deduplicated: bool = False
    client: Evalq | None = field(default=None, compare=False, repr=False)

    def _client(self) -> Evalq:
        return self.client if self.client is not None else default_client()

    def info(self) -> dict[str, str]:
        """The job's record as stored in Redis (empty when unknown or expired)."""
        return self._client().info(self.id)

    def state(self) -> str | None:
        """The job's state (see ``Evalq.state``); None when unknown."""
        return self._client().state(self.id)

    def result(self, timeout: float = 30.0, *, poll_s: float = 0.05) -> EvaluationResult:
        """Wait for the job to finish and return its result (see ``Evalq.result``)."""
        return self._client().result(self.id, timeout, poll_s=poll_s)


#: ``(message, explicit idempotency key, evaluation uuid, target uuid)`` of one submission.
_Job = tuple[dramatiq.Message[Any], str | None, str, str]


def _evaluation(request: EvaluationRequest, lane: str, explicit_key: str | None) -> _Job:
    if lane not in LANE_ACTORS:
        raise ValueError(f"lane must be one of {', '.join(LANE_ACTORS)}, not {lane!r}")
    actor, queue = LANE_ACTORS[lane]
    message = dramatiq.Message(
        queue_name=queue,
        actor_name=actor,
        args=(request.model_dump(mode="json"),),
        kwargs={},
        options={},
    )
    key = explicit_key or request.idempotency_key or request.default_idempotency_key()
    evaluation_uuid, target_uuid = request.result_key
    return message, key, evaluation_uuid, target_uuid


def _submission(
    message: dramatiq.Message[Any], key: str | None, evaluation_uuid: str, target_uuid: str
) -> Submission:
    # Like RedisBroker.enqueue: every delivery has its own redis_message_id.
    message = message.copy(options={**message.options, "redis_message_id": str(uuid.uuid4())})
    return Submission(
        key=key or message.message_id,
        job_id=message.message_id,
        queue=message.queue_name,
        actor=message.actor_name,
        redis_message_id=message.options["redis_message_id"],
        data=message.encode(),
        evaluation_uuid=evaluation_uuid,
        target_uuid=target_uuid,
    )


# --- shortcuts: one client from the environment ------------------------------------------

_default: Evalq | None = None
_default_lock = threading.Lock()


def default_client() -> Evalq:
    """The client the module-level shortcuts use: this process's evalq stack (settings from the
    environment, built on first use; ``workers.default_stack``), sharing its broker's Redis
    connections, so that whatever points the broker at a Redis points the shortcuts there."""
    global _default
    with _default_lock:
        if _default is None:
            import workers

            stack = workers.default_stack()
            _default = Evalq(stack.settings, redis_client=stack.broker.client)
        return _default


def use_default_client(client: Evalq | None) -> None:
    """Make ``client`` the one the shortcuts use (None: build it from the environment again)."""
    global _default
    with _default_lock:
        _default = client


def submit_evaluation(request: EvaluationRequest | Mapping[str, Any], **options: Any) -> JobHandle:
    """``Evalq.submit_evaluation`` on the default client."""
    return default_client().submit_evaluation(request, **options)


def submit_many(
    requests: Iterable[EvaluationRequest | Mapping[str, Any]], **options: Any
) -> list[JobHandle]:
    """``Evalq.submit_many`` on the default client."""
    return default_client().submit_many(requests, **options)


def dedup_for(mode: str | None, window_s: float | None) -> Dedup:
    """``Evalq.dedup_for`` with the settings of the environment (no Redis needed)."""
    settings = _settings()
    return resolve_dedup(
        mode,
        window_s,
        default_mode=settings.dedup_mode,
        default_window_s=settings.dedup_window_s,
        max_window_s=settings.job_ttl_s,
    )


def states(job_ids: list[str]) -> dict[str, str | None]:
    """``Evalq.states`` on the default client."""
    return default_client().states(job_ids)


def wait_all(job_ids: list[str], **options: Any) -> dict[str, str | None]:
    """``Evalq.wait_all`` on the default client."""
    return default_client().wait_all(job_ids, **options)


def abort(job_id: str) -> AbortOutcome:
    """``Evalq.abort`` on the default client."""
    return default_client().abort(job_id)


def _settings() -> Settings:
    return _default.settings if _default is not None else read_settings()
