"""Record each job's state in Redis as it moves through the broker."""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Broker, MessageProxy
from dramatiq.message import Message

logger = logging.getLogger(__name__)

#: Prefix of the per-job hash.
JOB_KEY_PREFIX = "evalq:job:"

STATES = ("queued", "running", "retrying", "succeeded", "dead_lettered", "aborted", "dropped")
TERMINAL_STATES = frozenset({"succeeded", "dead_lettered", "aborted", "dropped"})


def job_key(job_id: str) -> str:
    """The Redis key of one job's state hash."""
    return f"{JOB_KEY_PREFIX}{job_id}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class JobStates(dramatiq.Middleware):
    """Keeps one Redis hash per job with its state, queue, actor and timestamps.

    Until the error-policy middleware owns failures, a failed job is marked for the broker's
    dead-letter set (``message.fail()``) and recorded as ``dead_lettered`` with its error.

    Parameters:
      ttl_s(int): How long a job's record is kept after its last change, in seconds.
    """

    def __init__(self, *, ttl_s: int = 7 * 24 * 3600) -> None:
        self.ttl_s = ttl_s

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        if delay is not None:
            return
        self._write(
            broker,
            message.message_id,
            {
                "state": "queued",
                "queue": message.queue_name,
                "actor": message.actor_name,
                "enqueued_at": _now_ms(),
            },
        )

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        self._write(broker, message.message_id, {"state": "running", "started_at": _now_ms()})

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        fields: dict[str, Any] = {"finished_at": _now_ms()}
        if exception is None:
            fields["state"] = "succeeded"
        else:
            message.fail()
            fields.update(
                state="dead_lettered",
                error_type=type(exception).__qualname__,
                error_message=str(exception)[:2000],
            )
        self._write(broker, message.message_id, fields)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._write(broker, message.message_id, {"state": "dropped", "finished_at": _now_ms()})

    def _write(self, broker: Broker, job_id: str, fields: dict[str, Any]) -> None:
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        key = job_key(job_id)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.ttl_s)
            pipe.execute()
        except redis.RedisError:
            logger.warning("Could not record state of job %s.", job_id, exc_info=True)
