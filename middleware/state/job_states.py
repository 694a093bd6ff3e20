"""Job states: the names every part of evalq uses, and the transitions between them.

This module owns the job states: Python code uses the names below, and the Lua scripts get them
through ARGV (never spelled in a script). The transitions, and the script that writes each (every
one also moves the job in the job index, ``middleware.state.job_index``, in the same step):

    (new) --submit / enqueue--> queued        lua/submit.lua; lua/send.lua (an actor's send(),
                                              EvalqRedisBroker.enqueue)
    queued | retrying --start--> running      lua/start.lua (History.start_attempt)
    running --retry--> retrying               lua/retry.lua (settles the delivery)
    running --throttle--> queued              lua/retry.lua (our own rate limit: no budget spent)
    running --succeed--> succeeded            lua/finish.lua (acks the delivery)
    running --drop--> dropped                 lua/finish.lua (acks the delivery)
    any but finished --dead letter--> dead_lettered | aborted   lua/dead_letter_add.lua
    queued | retrying --abort--> aborted      lua/abort.lua (a running job: interrupted, then
                                              dead-lettered as aborted)
    dead_lettered | aborted --redrive--> queued   lua/dead_letter_redrive.lua

Every change of a running job's state is written by the script that settles its delivery, in
the same atomic step (``middleware.outcomes``, through the worker's group commit); ``History``
in ``middleware.state.jobs`` reads and writes the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal, get_args

JobState = Literal[
    "queued", "running", "retrying", "succeeded", "dead_lettered", "aborted", "dropped"
]
#: Every job state, in lifecycle order (the ``evalq jobs show`` contract).
STATES: Final[tuple[JobState, ...]] = get_args(JobState)
QUEUED: Final[JobState] = "queued"
RUNNING: Final[JobState] = "running"
RETRYING: Final[JobState] = "retrying"
SUCCEEDED: Final[JobState] = "succeeded"
DEAD_LETTERED: Final[JobState] = "dead_lettered"
ABORTED: Final[JobState] = "aborted"
DROPPED: Final[JobState] = "dropped"

#: A job in one of these states may still run.
ACTIVE_STATES: Final = frozenset({QUEUED, RUNNING, RETRYING})
#: A job in one of these states has finished: nothing runs it again unless it is redriven.
TERMINAL_STATES: Final = frozenset({SUCCEEDED, DEAD_LETTERED, ABORTED, DROPPED})
#: A job in one of these states is waiting for a worker: an abort stops it at once.
NOT_STARTED_STATES: Final = frozenset({QUEUED, RETRYING})

#: The category of a job an operator aborted (``middleware.core.errors.JobAborted``).
ABORTED_CATEGORY: Final = "aborted"

#: Outcomes of one attempt, as the timeline records them.
OUTCOMES = ("succeeded", "retried", "throttled", "dead_lettered", "dropped", "crashed", "aborted")


def dead_state(category: str) -> JobState:
    """The state of a job dead-lettered with ``category``: ``aborted`` for an abort, else
    ``dead_lettered``."""
    return ABORTED if category == ABORTED_CATEGORY else DEAD_LETTERED


def state_list(states: Iterable[str]) -> str:
    """``states`` as one script argument: names separated by spaces (``shared/states.lua``)."""
    return " ".join(sorted(states))


def attempt_record(
    n: int,
    *,
    started_at: int | None,
    finished_at: int | None = None,
    outcome: str | None = None,
    category: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    rule: str | None = None,
    worker: str | None = None,
    sentry_event_id: str | None = None,
) -> dict[str, Any]:
    """One entry of a job's attempt timeline (the ``evalq jobs show`` contract).

    ``error_type`` and ``error_message`` are shown as given: pass them from
    ``middleware.core.failure_text`` (redacted and capped there, once) or text of evalq's own.
    ``rule`` is the policy rule that classified the failure, ``worker`` the process that ran
    the attempt (``worker_registry.worker_id``), ``sentry_event_id`` the event it was reported
    as, when one was sent.
    """
    return {
        "n": n,
        "started_at": started_at,
        "finished_at": finished_at,
        "outcome": outcome,
        "category": category,
        "error_type": error_type,
        "error_message": error_message,
        "rule": rule,
        "worker": worker,
        "sentry_event_id": sentry_event_id,
    }
