"""Keep a worker's delayed messages through a restart of their consumer.

A retry waits out its backoff in the worker that fetched it from the delay queue
(``<queue>.DQ``): Dramatiq's consumer thread holds it in memory until its eta, then sends it onto
its queue and acks it. When that consumer meets a connection error (Redis restarting, a
failover, the network failing for a moment), Dramatiq 2.2 empties that in-memory queue and
starts a new consumer. The deliveries stay in this worker's acks set in Redis, and since the
worker is alive, nothing puts them back. Every retry waiting in the process at the blip was
stranded: its job stayed ``retrying`` until the process ended. Measured before this module: a
2 s network cut, and the delayed job never ran.

``KeepDelayed`` makes each consumer thread keep them. The restarted consumer is given the same
in-memory queue; it sends each message on at its eta and acks it by its delivery id, as before
the restart. ``EvalqRedisBroker.enqueue`` called from a consumer thread (only a delayed message
sent on at its eta) waits for Redis as long as it takes, as a settlement does, because a send
that gave up would drop the message from memory. At shutdown the delayed messages go back to
the delay queue, as Dramatiq does.
"""

from __future__ import annotations

from queue import PriorityQueue
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from dramatiq.errors import BrokerConnectionError
from dramatiq.worker import ConsumerThread


class KeepDelayed(dramatiq.Middleware):
    """Consumer threads keep their delayed messages when their consumer restarts."""

    def after_consumer_thread_boot(self, broker: Broker, thread: Any) -> None:
        if type(thread) is ConsumerThread:
            thread.__class__ = _KeepingConsumerThread


class _KeepingConsumerThread(ConsumerThread):
    """A ``ConsumerThread`` whose delay queue outlives its consumer."""

    @property
    def delay_queue(self) -> PriorityQueue[Any]:
        return self.__dict__["delay_queue"]  # type: ignore[no-any-return]

    @delay_queue.setter
    def delay_queue(self, queue: PriorityQueue[Any]) -> None:
        # Dramatiq sets it once when the thread is made, and again after a connection error,
        # which would drop what it holds.
        self.__dict__.setdefault("delay_queue", queue)

    def close(self) -> None:
        if not self.running:  # shutting down: the delayed messages go back to the delay queue
            super().close()
            return
        # A restart: the delayed messages stay held, in memory and in this worker's acks set.
        try:
            if self.consumer:
                self.consumer.close()
        except BrokerConnectionError:
            pass
