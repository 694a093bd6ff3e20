"""The consumer of evalq's broker (``middleware.state.broker``): no broker message can break it.

Dramatiq's Redis consumer raises on a message it cannot decode, restarts and drops its prefetch,
leaving the message unacked to come back after every restart; a message naming another queue or
an unknown actor runs into errors inside the worker thread. ``GuardedConsumer``
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

It keeps the broker's ``held_deliveries`` (taken from a fetched batch, not yet settled), which
the redelivery pass compares with the worker's acks set in Redis.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.errors import ConnectionClosed, DecodeError

from middleware.core.errors import CategorizedError
from middleware.core.failure_text import type_name
from middleware.core.message_shape import (
    decode_problem,
    delivery_problem,
    fields_problem,
    raw_excerpt,
)
from middleware.state import keys
from middleware.state.dead_letter_record import DeadLetterRecord
from middleware.state.dead_letters import AckTarget
from middleware.state.settlement import is_landing, is_put_back, is_settled

if TYPE_CHECKING:
    from middleware.state.broker import EvalqRedisBroker

logger = logging.getLogger("evalq.broker")


class MalformedMessage(CategorizedError):
    """A broker message that cannot run: undecodable, not a message, or not for this worker."""

    category = "invalid_payload"
    forced_action = "dead_letter"


class GuardedConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, screening each delivery, refilling its prefetch when acks free
    room, and keeping ``broker.held_deliveries``; ``EvalqRedisBroker`` uses it when it has a
    dead-letter store."""

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
            if not is_landing(message):  # else let go of when its posted settlement lands
                self._held.discard(message.options["redis_message_id"])
            self._freed()

    def _ack(self, message: MessageProxy) -> None:
        if is_settled(message):
            # Acked already, by the script that wrote the job's outcome.
            self.queued_message_ids.discard(message.message_id)
            return
        started = getattr(message, "_evalq_attempt", None) is not None
        if started or is_put_back(message):
            # The attempt started but the error policy never ended it: a hook raised a
            # BaseException past it (an interrupt landing late, a SystemExit). Acking would
            # leave the job running forever; put it back, where it counts as a lost attempt.
            # Or its start was interrupted (the error policy said so): it never ran.
            if started:
                logger.critical("job %s: its attempt ended without an outcome; putting it back "
                                "on queue %s", message.message_id, self.queue_name)  # fmt: skip
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


def _innermost(error: BaseException) -> BaseException:
    """The root of ``error``'s chain of causes (Dramatiq wraps decode errors twice)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error
