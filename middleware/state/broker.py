"""The Redis broker evalq runs on: Dramatiq's, with a consumer that no broker message can break.

Dramatiq's Redis consumer raises on a message it cannot decode, restarts and drops its prefetch,
leaving the message unacked to come back after every restart; a message naming another queue or
an unknown actor runs into errors inside the worker thread. ``EvalqRedisBroker``'s consumer
checks every delivery before a worker thread sees it. A message that cannot be decoded, is not a
Dramatiq message, names another queue or an unknown actor, or has arguments that do not fit its
actor is moved into evalq's dead-letter store as ``invalid_payload`` (with the raw message,
capped and redacted, and what was wrong) in the same atomic step that acks it; the rest of its
fetch batch goes on as usual.

The check of a good message costs a few isinstance calls and a cached ``Signature.bind``; the
search for bad ones (the consumer's held deliveries, two round trips) runs only when one is met.

The consumer also refills its prefetch when it should: Dramatiq's, once it holds all it may
prefetch, sleeps 2.5-5 ms before it looks again, and a busy process's work queue was found empty
at about half of its worker threads' takes. This one is woken by the acks that free a quarter of
its prefetch and fetches at once.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis, dq_name, q_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message
from dramatiq.worker import ConsumerThread

from middleware.core.errors import CategorizedError
from middleware.core.failure_text import type_name
from middleware.core.message_shape import (
    decode_problem,
    delivery_problem,
    fields_problem,
    raw_excerpt,
)
from middleware.state import keys
from middleware.state.connections import while_redis_away
from middleware.state.dead_letter_record import DeadLetterRecord
from middleware.state.dead_letters import AckTarget, DeadLetters
from middleware.state.group_commit import GroupCommit, GroupedScript
from middleware.state.hook_dispatch import HookDispatch
from middleware.state.job_states import QUEUED
from middleware.state.replication import ReplicaWait
from middleware.state.scripts import scripts_for
from middleware.state.settlement import is_settled, settle

logger = logging.getLogger("evalq.broker")

#: How long an actor's ``send()`` keeps trying while Redis is unreachable (a restart, a Sentinel
#: failover), in seconds, before its error reaches the caller.
SEND_PATIENCE_S = 30.0


class MalformedMessage(CategorizedError):
    """A broker message that cannot run: undecodable, not a message, or not for this worker."""

    category = "invalid_payload"
    forced_action = "dead_letter"


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
        self._consumers: weakref.WeakSet[_GuardedConsumer] = weakref.WeakSet()
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
        return _GuardedConsumer if self.dead_letters is not None else _RedisConsumer

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


class _GuardedConsumer(_RedisConsumer):
    broker: EvalqRedisBroker
    _oversized = False

    def __init__(self, broker: EvalqRedisBroker, queue_name: str, prefetch: int,
                 timeout: int) -> None:  # fmt: skip
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        # With all its prefetch held, Dramatiq's consumer sleeps 2.5-5 ms (and longer on each
        # pass that finds it still full) before it looks again, while the worker threads drain
        # the work queue. This one waits until the threads have settled a quarter of it, then
        # fetches at once, before the work queue runs dry.
        self._refill = max(1, prefetch // 4)
        self._room = threading.Event()
        self._held = broker.held_deliveries
        broker._consumers.add(self)

    @property
    def message_cache(self) -> list[bytes | None]:
        return self._cache

    @message_cache.setter
    def message_cache(self, fetched: list[bytes | None]) -> None:
        # Dramatiq assigns each fetched batch here: an oversized message never reaches decode
        # (one len() per message); the next pass dead-letters it.
        limit = self.broker.max_message_bytes
        if limit is not None and any(d is not None and len(d) > limit for d in fetched):
            fetched = [d for d in fetched if d is None or len(d) <= limit]
            self._oversized = True
        self._cache = fetched

    # A settlement that fails still lets go of the delivery: the process no longer holds it,
    # and the delivery left in the acks set is put back as an orphan (middleware.redelivery).

    def ack(self, message: MessageProxy) -> None:
        try:
            self._ack(message)
        finally:
            self._held.discard(message.options["redis_message_id"])
            self._freed()

    def _ack(self, message: MessageProxy) -> None:
        if is_settled(message):
            # Acked already, by the script that wrote the job's outcome.
            self.queued_message_ids.discard(message.message_id)
            return
        if getattr(message, "_evalq_attempt", None) is not None:
            # The attempt started but the error policy never ended it: a hook raised a
            # BaseException past it (an interrupt landing late, a SystemExit). Acking would
            # leave the job running forever; put it back, where it counts as a lost attempt.
            logger.critical("job %s: its attempt ended without an outcome; putting it back on "
                            "queue %s", message.message_id, self.queue_name)  # fmt: skip
            try:
                self.requeue([message])
            except redis.ConnectionError as error:
                raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]
            finally:
                self.queued_message_ids.discard(message.message_id)
            return
        super().ack(message)  # type: ignore[no-untyped-call]

    @property
    def _free(self) -> int:
        """Deliveries the consumer may still fetch before it holds all its prefetch."""
        return int(self.prefetch - self.outstanding_message_count)

    def _freed(self) -> None:
        if self._free >= self._refill:
            self._room.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)  # type: ignore[no-untyped-call]
        finally:
            self._held.discard(message.options["redis_message_id"])
            self._freed()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        messages = list(messages)
        try:
            super().requeue(messages)  # type: ignore[no-untyped-call]
        finally:
            for message in messages:
                self._held.discard(message.options["redis_message_id"])

    def _has_room(self) -> bool:
        """Whether the consumer may fetch; when it holds all its prefetch, wait up to its
        timeout for the worker threads to settle a quarter of it."""
        if self._cache or self._free > 0:
            return True
        self._room.clear()
        if self._free < self._refill:
            self._room.wait(self.timeout / 1000)
        return self._free > 0

    def __next__(self) -> MessageProxy | None:
        while True:
            if not self._has_room():
                return None  # Dramatiq's loop goes on: delayed messages, a shutdown
            try:
                proxy: MessageProxy | None = super().__next__()  # type: ignore[no-untyped-call]
            except DecodeError:
                # The undecodable message was taken off the cache already: find it (and any
                # other bad one) among the deliveries this consumer holds. An earlier search may
                # have dead-lettered it already; either way, go on with the batch.
                self._quarantine()
                continue
            if self._oversized:
                self._oversized = False
                self._quarantine()
            if proxy is None:
                return None
            if self._problem(proxy) is None:
                self._held.add(proxy.options["redis_message_id"])
                return proxy
            self.queued_message_ids.discard(proxy.message_id)
            if not self._quarantine():
                # Dead-lettered by an earlier search, or requeued meanwhile.
                logger.debug("queue %s: malformed message %s no longer held",
                             self.queue_name, proxy.message_id)  # fmt: skip

    def _problem(self, proxy: MessageProxy) -> str | None:
        message = proxy._message
        return self._fields_problem(
            message.queue_name, message.actor_name, message.args, message.kwargs, message.options
        )

    def _fields_problem(
        self, queue_name: Any, actor_name: Any, args: Any, kwargs: Any, options: Any
    ) -> str | None:
        problem = delivery_problem(
            queue_name=queue_name,
            actor_name=actor_name,
            args=args,
            kwargs=kwargs,
            options=options,
            consumed_queue=self.queue_name,
            actors=self.broker.actors,
            signature_of=self.broker.signature_of,
        )
        if problem is None and not isinstance(options.get("redis_message_id"), str):
            # Dramatiq acks a delivery by this id; without it the message would run forever.
            return "has no options.redis_message_id (it was not enqueued through Dramatiq)"
        return problem

    def _quarantine(self) -> int:
        """Dead-letter (and ack) every held delivery that cannot run, leave the others; returns
        how many were found."""
        client: redis.Redis = self.broker.client
        acks = keys.acks_key(self.broker.broker_id, self.queue_name)
        try:
            held = [keys.text(rid) for rid in client.smembers(acks)]  # type: ignore[union-attr]
            values = client.hmget(keys.queue_messages_key(self.queue_name), held) if held else []
        except redis.RedisError:
            logger.warning("queue %s: could not look for malformed messages", self.queue_name,
                           exc_info=True)  # fmt: skip
            return 0
        found = 0
        for redis_message_id, data in zip(held, values, strict=True):  # type: ignore[arg-type]
            if data is None:
                continue
            problem, fields = self._screen(data)
            if problem is not None:
                found += 1
                self._dead_letter(redis_message_id, data, fields, problem)
        return found

    def _screen(self, data: bytes) -> tuple[str | None, dict[str, Any] | None]:
        """What is wrong with raw ``data`` (None: nothing), and its fields when it is a JSON
        object. Read from the raw JSON: decoding a ``Message`` converts some wrong shapes."""
        limit = self.broker.max_message_bytes
        if limit is not None and len(data) > limit:
            return (
                f"is {len(data)} bytes, over the limit of {limit} bytes "
                "(EVALQ_MAX_REQUEST_BYTES and the message's envelope)"
            ), None
        try:
            fields = json.loads(data.decode("utf-8"))
        except Exception as error:
            return decode_problem(_innermost(error)), None
        if not isinstance(fields, dict):
            return fields_problem(fields), None
        problem = fields_problem(fields)
        if problem is None:
            problem = self._fields_problem(
                fields["queue_name"],
                fields["actor_name"],
                fields.get("args", []),
                fields.get("kwargs", {}),
                fields.get("options", {}),
            )
        return problem, fields

    def _dead_letter(
        self, redis_message_id: str, data: bytes, fields: dict[str, Any] | None, problem: str
    ) -> None:
        assert self.broker.dead_letters is not None
        now = int(time.time() * 1000)
        job_id = fields.get("message_id") if fields else None
        actor = fields.get("actor_name") if fields else None
        runnable = fields is not None and fields_problem(fields) is None
        record = DeadLetterRecord.create(
            job_id=job_id if isinstance(job_id, str) and job_id else f"raw-{redis_message_id}",
            queue=self.queue_name,
            actor=actor if isinstance(actor, str) else "",
            category="invalid_payload",
            rule=None,
            reason=f"invalid_payload: the broker message {problem}",
            error_type=type_name(MalformedMessage("")),
            error_message=f"the broker message {problem}",
            first_failure_at=now,
            last_failure_at=now,
            dead_at=now,
            worker_host=socket.gethostname(),
            worker_pid=os.getpid(),
            payload=fields if runnable and fields is not None else {"raw": raw_excerpt(data)},
        )
        ack = AckTarget.for_delivery(
            broker_id=self.broker.broker_id,
            queue=self.queue_name,
            redis_message_id=redis_message_id,
        )
        try:
            written = self.broker.dead_letters.add(record, ack=ack)
        except redis.RedisError:
            logger.warning("queue %s: could not dead-letter a malformed message; will retry",
                           self.queue_name, exc_info=True)  # fmt: skip
            return
        if written:
            logger.error("queue %s: malformed message %s dead-lettered as invalid_payload: %s",
                         self.queue_name, record.job_id, problem)  # fmt: skip


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


def _innermost(error: BaseException) -> BaseException:
    """The root of ``error``'s chain of causes (Dramatiq wraps decode errors twice)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error
