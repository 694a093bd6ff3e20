"""Request an abort: one atomic Redis script (``lua/abort.lua``) that reads a job's state and
acts on it.

It sets the job's abort key, marks a job that has not started (``queued``, or ``retrying`` between
two attempts) ``aborted`` at once, and publishes the job id on ``keys.ABORT_CHANNEL`` so that the
worker running it (``middleware.abort.AbortWatcher``) interrupts it. A job that already finished
is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import redis

from middleware.state import keys
from middleware.state.job_states import (
    ABORTED,
    ABORTED_CATEGORY,
    NOT_STARTED_STATES,
    QUEUED,
    RETRYING,
    TERMINAL_STATES,
    state_list,
)
from middleware.state.jobs import now_ms
from middleware.state.scripts import scripts_for

#: What an abort request found: it was requested, the job had finished, or no such job.
AbortResult = Literal["requested", "finished", "unknown"]


@dataclass(frozen=True)
class AbortOutcome:
    """What ``request_abort`` did.

    ``state_before`` is the job's state when the abort was requested (None for an unknown job);
    ``notified`` is how many worker processes received the published request.
    """

    job_id: str
    result: AbortResult
    state_before: str | None
    notified: int = 0
    queue: str | None = None
    actor: str | None = None

    @property
    def requested(self) -> bool:
        """Whether an abort was requested (False: the job had finished, or is unknown)."""
        return self.result == "requested"

    @property
    def message(self) -> str:
        """One sentence for the operator who asked."""
        job = f"job {self.job_id}"
        if self.result == "unknown":
            return f"no {job} (unknown, or its record has expired): nothing to abort"
        if self.result == "finished":
            state = (self.state_before or "").replace("_", "-")
            return f"{job} already {state}: nothing to abort"
        if self.state_before == QUEUED:
            return (
                f"{job} was queued: it will not run (the worker that picks it up dead-letters "
                "it as aborted)"
            )
        if self.state_before == RETRYING:
            return (
                f"{job} was waiting to retry: it will not run again (the worker that picks it "
                "up dead-letters it as aborted)"
            )
        where = f"{self.actor} on {self.queue}" if self.queue else "its worker"
        return (
            f"abort requested: {job} was running ({where}; {self.notified} worker process(es) "
            "told); it stops when its thread next runs Python, at the latest when a provider "
            "request in flight times out"
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``evalq abort --json`` document."""
        return {
            "job_id": self.job_id,
            "state_before": self.state_before,
            "aborted": self.requested,
            "message": self.message,
        }


def request_abort(client: redis.Redis, job_id: str, *, ttl_s: int) -> AbortOutcome:
    """Abort ``job_id``, atomically; a job that already finished is left as it is.

    The abort key and the job's record are kept ``ttl_s`` seconds.
    """
    found = scripts_for(client).abort(
        keys=[keys.job_key(job_id), keys.abort_key(job_id)],
        args=[
            job_id,
            ttl_s,
            keys.ABORT_CHANNEL,
            now_ms(),
            state_list(TERMINAL_STATES),
            state_list(NOT_STARTED_STATES),
            QUEUED,
            ABORTED,
            ABORTED_CATEGORY,
            keys.JOB_INDEX_PREFIX,
        ],
    )
    result, state, notified, queue, actor = (keys.text(v) for v in found)
    return AbortOutcome(
        job_id=job_id,
        result=result,  # type: ignore[arg-type]
        state_before=state or None,
        notified=int(notified),
        queue=queue or None,
        actor=actor or None,
    )
