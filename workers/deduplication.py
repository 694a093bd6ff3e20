"""Deduplication of submissions: when a new submission returns an earlier job instead of a new one.

Every submission carries an idempotency key: the caller's, or a stable hash of the evaluation uuid
and the target uuid. The key points to the job that last claimed it. Whether a new submission with
the same key is a duplicate of that job depends on the new submission's mode:

- ``until_finished`` (default): while the job is ``queued``, ``running`` or ``retrying``.
- ``until_started``: while the job is ``queued`` (it has not started, or was turned back by a rate
  limit before doing any work, or was redriven and waits to run again).
- ``window``: within ``window_s`` seconds of the job's submission, whatever its state.

A job that is not a duplicate claims the key. Claiming the key and enqueueing the job's message
are one Lua script (``middleware/state/lua/submit.lua``), so two submitters can never both claim a
key, and a key never points to a job that was not enqueued. Redrive does not look at keys at all: a
dead job is redriven under its own id even while its key still dedups new submissions to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, cast, get_args

from config.settings import DedupMode
from middleware.state import keys
from middleware.state.job_states import ACTIVE_STATES, QUEUED, RUNNING, state_list

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
    def holding_states(self) -> frozenset[str]:
        """The states in which the job holding the key makes a submission its duplicate (in
        ``window`` mode the window decides, whatever the state)."""
        return _HOLDING_STATES[self.mode]

    @property
    def window_ms(self) -> int:
        """The window in milliseconds (0 outside ``window`` mode)."""
        return 0 if self.window_s is None else math.ceil(self.window_s * 1000)


_HOLDING_STATES: Final[dict[str, frozenset[str]]] = {
    "until_finished": ACTIVE_STATES,
    "until_started": frozenset({QUEUED}),
    "window": frozenset(),
}


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


@dataclass(frozen=True)
class Submission:
    """One job to enqueue unless it is a duplicate: the arguments of the ``submit`` script.

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
        """``(keys, args)`` of the ``submit`` script (``lua/submit.lua``) for this submission."""
        script_keys = [
            idempotency_key(self.key),
            keys.job_key(self.job_id),
            keys.queue_key(self.queue),
            keys.queue_messages_key(self.queue),
        ]
        args: list[str | int | bytes] = [
            self.job_id,
            keys.JOB_PREFIX,
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
            QUEUED,
            RUNNING,
            state_list(dedup.holding_states),
            keys.JOB_INDEX_PREFIX,
        ]
        return script_keys, args
