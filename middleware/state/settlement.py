"""Settling a failed attempt's delivery in Redis: its retry in one atomic step, and patience.

A delivery is settled once, by the worker that holds it: the retry script (``lua/retry.lua``, like
the dead-letter store's add script) does nothing unless the delivery is still in Dramatiq's acks
set of this worker, so a delivery requeued after a heartbeat timeout is not settled twice.
``settle`` keeps trying while Redis is unreachable and nacks the message if Redis does not come
back.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from middleware.state import connections, keys
from middleware.state.job_states import RETRYING, RUNNING

# Settling is the error policy's work, logged where operators read the error policy's decisions.
logger = logging.getLogger("evalq.error_policy")

#: How often a settlement that keeps failing is reported (it is retried all along), in seconds.
SETTLE_PATIENCE_S = 60.0


def delayed_retry(message: MessageProxy, *, eta: int, carried: dict[str, Any]) -> tuple[str, bytes]:
    """The Redis message id and encoded message that retry ``message`` at ``eta`` (ms since the
    epoch) from its queue's delay queue; ``carried`` are the options the next attempt reads."""
    redis_message_id = str(uuid.uuid4())
    retry = message.copy(
        queue_name=keys.delay_queue_name(message.queue_name),
        options={"eta": eta, "redis_message_id": redis_message_id, **carried},
    )
    return redis_message_id, retry.encode()


def retry_call(
    message: MessageProxy,
    *,
    broker_id: str,
    redis_message_id: str,
    data: bytes,
    entry: dict[str, Any],
    eta: int,
    job_ttl_s: int,
    state: str = RETRYING,
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ``lua/retry.lua``: ack ``message``'s delivery, put the retry
    (``redis_message_id``, ``data`` from ``delayed_retry``) on the delay queue, mark the job
    retrying at ``eta`` and add ``entry`` (``history.attempt_record``) to its timeline."""
    queue = message.queue_name
    delay_queue = keys.delay_queue_name(queue)
    script_keys = [
        keys.acks_key(broker_id, queue),
        keys.queue_messages_key(queue),
        keys.queue_key(delay_queue),
        keys.queue_messages_key(delay_queue),
        keys.job_key(message.message_id),
        keys.attempts_key(message.message_id),
    ]
    args = [
        message.options["redis_message_id"],
        redis_message_id,
        data,
        entry["n"],
        json.dumps(entry),
        entry["category"],
        eta,
        entry["error_type"] or "",
        entry["error_message"] or "",
        job_ttl_s,
        state,
        message.message_id,
        message.message_timestamp,
        keys.JOB_INDEX_PREFIX,
    ]
    return script_keys, args


def finish_call(
    message: MessageProxy,
    *,
    broker_id: str,
    entry: dict[str, Any],
    fields: dict[str, Any],
    job_ttl_s: int,
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ``lua/finish.lua``: ack ``message``'s delivery, add ``entry``
    (``job_states.attempt_record``) to its timeline and write ``fields`` (its final state first)."""
    queue = message.queue_name
    script_keys = [
        keys.acks_key(broker_id, queue),
        keys.queue_messages_key(queue),
        keys.job_key(message.message_id),
        keys.attempts_key(message.message_id),
    ]
    pairs = [item for name, value in fields.items() for item in (name, value)]
    args = [
        message.options["redis_message_id"],
        entry["n"],
        json.dumps(entry),
        job_ttl_s,
        message.message_id,
        message.message_timestamp,
        keys.JOB_INDEX_PREFIX,
        RUNNING,
        *pairs,
    ]
    return script_keys, args


def mark_settled(message: MessageProxy) -> None:
    """Note that ``message``'s delivery was acked by an evalq script (or is no longer held), so
    that the consumer skips Dramatiq's own ack of it: one round trip less per job."""
    message._evalq_settled = True  # type: ignore[attr-defined]


def is_settled(message: MessageProxy) -> bool:
    """Whether ``mark_settled`` was called for ``message``."""
    return bool(getattr(message, "_evalq_settled", False))


def begin_landing(message: MessageProxy) -> None:
    """Note that ``message``'s settlement is posted and has not landed yet: the process holds
    its delivery until it does (the consumer leaves it in ``held_deliveries``)."""
    message._evalq_landing = True  # type: ignore[attr-defined]


def end_landing(message: MessageProxy) -> None:
    """Note that ``message``'s posted settlement has landed (or failed for good)."""
    message._evalq_landing = False  # type: ignore[attr-defined]


def is_landing(message: MessageProxy) -> bool:
    """Whether ``message``'s posted settlement has not landed yet."""
    return bool(getattr(message, "_evalq_landing", False))


def mark_put_back(message: MessageProxy) -> None:
    """Note that ``message``'s delivery must go back to its queue, not be acked: its job never
    ran (its start was interrupted), and an ack would lose it."""
    message._evalq_put_back = True  # type: ignore[attr-defined]


def is_put_back(message: MessageProxy) -> bool:
    """Whether ``mark_put_back`` was called for ``message``."""
    return bool(getattr(message, "_evalq_put_back", False))


#: Redis errors that pass: retried until Redis answers again (across a Sentinel failover too).
TRANSIENT = connections.TRANSIENT


def settle(message: MessageProxy | Message[Any], operation: Callable[[], Any]) -> Any:
    """Run a settlement, retrying for as long as Redis is unreachable (as Dramatiq retries its
    own acks), and return what ``operation`` returns.

    The message stays unacked meanwhile: if the worker dies while waiting, the broker redelivers
    it and the attempt counts as crashed. A job is never lost, and never acked without its
    retry or dead letter, because Redis blinked.
    """
    started = time.monotonic()
    delay, warned_at = 0.1, 0.0
    while True:
        try:
            return operation()
        except TRANSIENT:
            waited = time.monotonic() - started
            if waited - warned_at >= SETTLE_PATIENCE_S:
                warned_at = waited
                logger.critical(
                    "job %s: cannot settle for %.0fs (Redis unavailable); still trying",
                    message.message_id, waited, exc_info=True,
                )  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
