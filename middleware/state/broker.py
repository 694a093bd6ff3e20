"""The Redis broker evalq runs on: Dramatiq's, with evalq's sends and a consumer that no broker
message can break (``middleware.state.consumer``).

An actor's ``send()`` records the new job ``queued`` in the same script that enqueues it
(``lua/send.lua``), over one connection the process keeps, in a round trip shared with the other
threads' calls (``GroupCommit``); it waits out a Redis restart or a Sentinel failover rather than
fail, and returns once a replica has the job. The broker also keeps what the process's consumers
hold in memory, for the redelivery pass (``middleware.redelivery``).
"""

from __future__ import annotations

import inspect
import logging
import threading
import uuid
import weakref
from typing import Any

from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis, dq_name, q_name
from dramatiq.message import Message
from dramatiq.worker import ConsumerThread

from middleware.state import keys
from middleware.state.connections import while_redis_away
from middleware.state.consumer import GuardedConsumer
from middleware.state.dead_letters import DeadLetters
from middleware.state.group_commit import GroupCommit, GroupedScript
from middleware.state.hook_dispatch import HookDispatch
from middleware.state.job_states import QUEUED
from middleware.state.replication import ReplicaWait
from middleware.state.scripts import scripts_for
from middleware.state.settlement import settle

logger = logging.getLogger("evalq.broker")

#: How long an actor's ``send()`` keeps trying while Redis is unreachable (a restart, a Sentinel
#: failover), in seconds, before its error reaches the caller.
SEND_PATIENCE_S = 30.0


class EvalqRedisBroker(HookDispatch, RedisBroker):
    """A ``RedisBroker`` whose consumers dead-letter malformed messages instead of choking.

    Parameters:
      dead_letters(DeadLetters | None): Where malformed messages go; None keeps Dramatiq's
        behaviour (for brokers that only enqueue).
      max_message_bytes(int | None): A message larger than this, in bytes, is dead-lettered
        without running (None: no limit).
      job_ttl_s(int | None): How long a job's record lives; set, ``enqueue`` records each new
        job ``queued`` as it sends it (None: Dramatiq's ``enqueue``).
      replica_wait_ms(int): How long a send waits for a replica of the primary to have it, in
        milliseconds (``middleware.state.replication``; 0: never).
      **kwargs: As for ``RedisBroker``.
    """

    def __init__(
        self,
        *,
        dead_letters: DeadLetters | None = None,
        max_message_bytes: int | None = None,
        job_ttl_s: int | None = None,
        replica_wait_ms: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.dead_letters = dead_letters
        self.max_message_bytes = max_message_bytes
        self.job_ttl_s = job_ttl_s
        self._signatures: dict[str, inspect.Signature | None] = {}
        #: Delivery ids the process holds in memory: taken from a consumer's fetched batch and
        #: not yet acked, nacked or put back (``middleware.redelivery`` looks for the rest).
        self.held_deliveries: set[str] = set()
        self._consumers: weakref.WeakSet[GuardedConsumer] = weakref.WeakSet()
        # Sends from all of the process's threads, and Dramatiq's dispatch script (a consumer's
        # fetches; Dramatiq's own acks and requeues), over one connection the process keeps: a
        # lone call skips redis-py's per-command path (about a quarter of a send's CPU);
        # overlapping ones share a round trip. Dramatiq's _dispatch looks the script up on
        # every call.
        self._commits = GroupCommit(self.client, replicas=ReplicaWait(self.client, replica_wait_ms))
        self.scripts["dispatch"] = GroupedScript(self.scripts["dispatch"], self._commits)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue ``message`` as Dramatiq does and, when it starts a new job, record the job
        ``queued`` in the same script (with ``job_ttl_s`` set; else exactly Dramatiq's)."""
        if self.job_ttl_s is None:
            return super().enqueue(message, delay=delay)
        # As RedisBroker.enqueue: a delivery id of its own, and the delay queue for a delay.
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        if delay is not None:
            message = message.copy(
                queue_name=dq_name(message.queue_name),
                options={"eta": current_millis() + delay},
            )
        self.emit_before("enqueue", message, delay)
        script_keys, args = send_call(message, job_ttl_s=self.job_ttl_s)
        send, commits = scripts_for(self.client).send, self._commits

        # Resent, the same delivery is enqueued once (the script checks): a send() waits out a
        # Redis restart or a Sentinel failover rather than fail, and never makes two jobs.
        # It returns once a replica has the job, too: a failover cannot take it back.
        def operation() -> Any:
            return commits(send, keys=script_keys, args=args, durable=True)

        if isinstance(threading.current_thread(), ConsumerThread):
            # A delayed message sent on at its eta (middleware.delay_queue): giving up would drop
            # it from memory, so this waits for Redis as long as a settlement does.
            settle(message, operation)
        else:
            while_redis_away(operation, patience_s=SEND_PATIENCE_S)
        self.emit_after("enqueue", message, delay)
        return message

    def fetched_not_taken(self, delivery: str) -> bool:
        """Whether ``delivery`` is in a fetched batch of one of the process's consumers that has
        not been handed on yet."""
        needle = delivery.encode()
        return any(
            data is not None and needle in data
            for consumer in list(self._consumers)
            for data in list(consumer.message_cache)
        )

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return GuardedConsumer if self.dead_letters is not None else _RedisConsumer

    def signature_of(self, actor_name: str) -> inspect.Signature | None:
        """The signature of an actor's function, cached; None when it cannot be read."""
        try:
            return self._signatures[actor_name]
        except KeyError:
            pass
        actor = self.actors.get(actor_name)
        try:
            found = inspect.signature(actor.fn) if actor is not None else None
        except (TypeError, ValueError):
            found = None
        self._signatures[actor_name] = found
        return found


def send_call(message: Message[Any], *, job_ttl_s: int) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ``lua/send.lua`` for ``message`` (its delivery id and, for a delay,
    its delay queue set already). A message carrying evalq's options belongs to a known job (a
    retry, a delayed message coming due): it is enqueued without a new record."""
    queue = message.queue_name
    known = any(name.startswith("evalq_") for name in message.options)
    script_keys = [
        keys.queue_key(queue),
        keys.queue_messages_key(queue),
        keys.job_key(message.message_id),
    ]
    args: list[Any] = [
        message.options["redis_message_id"],
        message.encode(),
        0 if known else 1,
        message.message_id,
        job_ttl_s,
        message.message_timestamp,
        keys.JOB_INDEX_PREFIX,
    ]
    if not known:
        args += [QUEUED, q_name(queue), message.actor_name]
    return script_keys, args
