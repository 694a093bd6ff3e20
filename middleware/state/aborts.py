"""Request an abort: one atomic Redis script that reads a job's state and acts on it.

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
from middleware.state.jobs import now_ms

#: What an abort request found: it was requested, the job had finished, or no such job.
AbortResult = Literal["requested", "finished", "unknown"]

# KEYS[1] job state hash, KEYS[2] abort key; ARGV[1] job id, ARGV[2] ttl (s), ARGV[3] channel,
# ARGV[4] now (ms). Returns {result, state before, workers notified, queue, actor}.
# A state hash without a state is a job its submitter is still enqueueing: it counts as queued.
REQUEST_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown', '', 0, '', ''} end
local found = redis.call('HMGET', KEYS[1], 'state', 'queue', 'actor')
local state, queue, actor = found[1] or 'queued', found[2] or '', found[3] or ''
if state == 'succeeded' or state == 'dead_lettered' or state == 'aborted'
    or state == 'dropped' then
  return {'finished', state, 0, queue, actor}
end
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[2])
if state == 'queued' or state == 'retrying' then
  redis.call('HSET', KEYS[1], 'state', 'aborted', 'category', 'aborted',
    'abort_requested_at', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'abort_requested_at', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local notified = redis.call('PUBLISH', ARGV[3], ARGV[1])
return {'requested', state, notified, queue, actor}
"""


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
        if self.state_before == "queued":
            return (
                f"{job} was queued: it will not run (the worker that picks it up dead-letters "
                "it as aborted)"
            )
        if self.state_before == "retrying":
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
    found = client.eval(
        REQUEST_SCRIPT,
        2,
        keys.job_key(job_id),
        keys.abort_key(job_id),
        job_id,
        ttl_s,
        keys.ABORT_CHANNEL,
        now_ms(),
    )
    result, state, notified, queue, actor = (keys.text(v) for v in found)  # type: ignore[union-attr]
    return AbortOutcome(
        job_id=job_id,
        result=result,  # type: ignore[arg-type]
        state_before=state or None,
        notified=int(notified),
        queue=queue or None,
        actor=actor or None,
    )
