"""Deduplication of submissions: when a new submission returns an earlier job instead of a new one.

Every submission carries an idempotency key: the caller's, or a stable hash of the evaluation uuid
and the target uuid. The key points to the job that last claimed it. Whether a new submission with
the same key is a duplicate of that job depends on the new submission's mode:

- ``until_finished`` (default): while the job is ``queued``, ``running`` or ``retrying``.
- ``until_started``: while the job is ``queued`` (it has not started, or was turned back by a rate
  limit before doing any work, or was redriven and waits to run again).
- ``window``: within ``window_s`` seconds of the job's submission, whatever its state.

A job that is not a duplicate claims the key. Claiming the key and enqueueing the job's message
are one Lua script (:data:`SUBMIT_SCRIPT`), so two submitters can never both claim a key, and a
key never points to a job that was not enqueued. Redrive does not look at keys at all: a dead job
is redriven under its own id even while its key still dedups new submissions to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from middleware.state import keys

DedupMode = Literal["until_finished", "until_started", "window"]
DEDUP_MODES: Final[tuple[str, ...]] = get_args(DedupMode)

#: Where an idempotency key points to the job that claimed it (a string: the job id).
IDEMPOTENCY_KEY_PREFIX: Final = "evalq:idem:"

#: A job record without a state (claimed by a submitter that enqueued in a second step and has
#: not done it yet, as evalq before the one-step script did, or a record that lost its state)
#: holds its key for this long, in milliseconds; after that a new submission takes the key over.
STALE_CLAIM_MS: Final = 60_000


def idempotency_key(key: str) -> str:
    """The Redis key of one idempotency key."""
    return f"{IDEMPOTENCY_KEY_PREFIX}{key}"


class DedupError(ValueError):
    """The deduplication arguments do not fit together; the message says what to pass."""


@dataclass(frozen=True)
class Dedup:
    """How a submission is deduplicated against the job holding its idempotency key.

    Parameters:
      mode(DedupMode): ``until_finished``, ``until_started`` or ``window``.
      window_s(float | None): With ``window``, how long after a job's submission later
        submissions are its duplicates, in seconds; None with the other modes.
    """

    mode: DedupMode = "until_finished"
    window_s: float | None = None

    @property
    def window_ms(self) -> int:
        """The window in milliseconds (0 outside ``window`` mode)."""
        return 0 if self.window_s is None else math.ceil(self.window_s * 1000)


def resolve_dedup(
    mode: str | None,
    window_s: float | None,
    *,
    default_mode: str = "until_finished",
    default_window_s: float | None = None,
    max_window_s: float | None = None,
) -> Dedup:
    """The ``Dedup`` of a submission, from its arguments and the configured defaults.

    ``mode`` None means ``default_mode``; in ``window`` mode, ``window_s`` None means
    ``default_window_s``. ``max_window_s`` is how long job records are kept (a window is
    measured from the record of the job it dedups to).

    Raises:
      DedupError: an unknown mode, a window mode without a positive window, a window given
        with another mode, or a window longer than ``max_window_s``.
    """
    chosen = default_mode if mode is None else mode
    if chosen not in DEDUP_MODES:
        raise DedupError(f"dedup mode must be one of {', '.join(DEDUP_MODES)}, not {chosen!r}")
    if chosen != "window":
        if window_s is not None:
            raise DedupError(
                f"a dedup window only applies to dedup mode window, not to {chosen}: "
                "drop the window or choose mode window"
            )
        return Dedup(cast(DedupMode, chosen))
    window = default_window_s if window_s is None else window_s
    if window is None:
        raise DedupError(
            "dedup mode window needs a window in seconds "
            "(dedup_window_s, --dedup-window or EVALQ_DEDUP_WINDOW_S)"
        )
    if isinstance(window, bool) or not math.isfinite(window) or window <= 0:
        raise DedupError(f"the dedup window must be a positive number of seconds, not {window!r}")
    if max_window_s is not None and window > max_window_s:
        raise DedupError(
            f"the dedup window ({window:g} s) cannot be longer than EVALQ_JOB_TTL_S "
            f"({max_window_s:g} s), how long the job records it is measured from are kept"
        )
    return Dedup("window", float(window))


# KEYS[1] idempotency key, KEYS[2] the new job's state hash, KEYS[3] the queue's list of message
# ids, KEYS[4] the queue's payload hash (Dramatiq's keys: a worker fetches from them).
# ARGV[1] new job id, [2] job state prefix, [3] mode, [4] window ms, [5] now ms, [6] stale claim
# ms, [7] job ttl s, [8] evaluation uuid, [9] target uuid, [10] idempotency key, [11] queue,
# [12] actor, [13] redis message id, [14] encoded message.
# Returns {job id, 1} for a duplicate, {new job id, 0} when the new job was claimed and enqueued.
SUBMIT_SCRIPT: Final = """
local holder = redis.call('GET', KEYS[1])
if holder then
  local record = redis.call('HMGET', ARGV[2] .. holder, 'state', 'claimed_at', 'running_until')
  local state = record[1]
  local claimed = tonumber(record[2]) or 0
  local now = tonumber(ARGV[5])
  -- A job still 'running' past its time limit (plus grace) died after finishing its work,
  -- before its final state was written: it holds nothing any more.
  if state == 'running' and record[3] and tonumber(record[3]) < now then state = 'stale' end
  if not state then
    if claimed > now - tonumber(ARGV[6]) then return {holder, 1} end
  elseif ARGV[3] == 'window' then
    if claimed > now - tonumber(ARGV[4]) then return {holder, 1} end
  elseif state == 'queued' then
    return {holder, 1}
  elseif ARGV[3] == 'until_finished' and (state == 'running' or state == 'retrying') then
    return {holder, 1}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[7])
-- The state is written before the message is pushed: a worker that picks it up at once
-- overwrites 'queued' with 'running', never the other way round.
redis.call('HSET', KEYS[2], 'state', 'queued', 'queue', ARGV[11], 'actor', ARGV[12],
           'enqueued_at', ARGV[5], 'claimed_at', ARGV[5], 'evaluation_uuid', ARGV[8],
           'target_uuid', ARGV[9], 'idempotency_key', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('HSET', KEYS[4], ARGV[13], ARGV[14])
redis.call('RPUSH', KEYS[3], ARGV[13])
return {ARGV[1], 0}
"""


@dataclass(frozen=True)
class Submission:
    """One job to enqueue unless it is a duplicate: the arguments of :data:`SUBMIT_SCRIPT`.

    Parameters:
      key(str): The idempotency key (without its Redis prefix).
      job_id(str): The new job's id (its Dramatiq message id).
      queue(str): The queue the message goes to.
      actor(str): The actor that runs it.
      redis_message_id(str): The delivery id Dramatiq's Redis broker keys the payload by.
      data(bytes): The encoded Dramatiq message.
      evaluation_uuid(str): Recorded on the job, to find its result.
      target_uuid(str): Recorded on the job, to find its result.
    """

    key: str
    job_id: str
    queue: str
    actor: str
    redis_message_id: str
    data: bytes
    evaluation_uuid: str
    target_uuid: str

    def script_call(
        self, dedup: Dedup, *, now_ms: int, job_ttl_s: int
    ) -> tuple[list[str], list[str | int | bytes]]:
        """``(keys, args)`` of :data:`SUBMIT_SCRIPT` for this submission."""
        script_keys = [
            idempotency_key(self.key),
            keys.job_key(self.job_id),
            keys.queue_key(self.queue),
            keys.queue_messages_key(self.queue),
        ]
        args: list[str | int | bytes] = [
            self.job_id,
            keys.JOB_PREFIX,
            dedup.mode,
            dedup.window_ms,
            now_ms,
            STALE_CLAIM_MS,
            job_ttl_s,
            self.evaluation_uuid,
            self.target_uuid,
            self.key,
            self.queue,
            self.actor,
            self.redis_message_id,
            self.data,
        ]
        return script_keys, args
