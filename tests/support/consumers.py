"""evalq's broker with one no-op actor, and taking deliveries from its consumer, for tests of
the consumer against a real Redis."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy

from middleware.state.broker import EvalqRedisBroker
from middleware.state.dead_letters import DeadLetters


def noop_broker(client: redis.Redis, queue: str) -> EvalqRedisBroker:
    """evalq's broker on ``client``, no middleware, with an actor ``noop`` on ``queue``."""
    broker = EvalqRedisBroker(client=client, middleware=[], dead_letters=DeadLetters(client))
    broker.declare_actor(dramatiq.actor(lambda: None, actor_name="noop", queue_name=queue,
                                        broker=broker))  # fmt: skip
    return broker


def send_noops(broker: EvalqRedisBroker, queue: str, n: int) -> None:
    """Enqueue ``n`` messages for the ``noop`` actor."""
    for _ in range(n):
        broker.enqueue(dramatiq.Message(queue_name=queue, actor_name="noop", args=(),
                                        kwargs={}, options={}))  # fmt: skip


def take(consumer: Any, n: int) -> list[MessageProxy]:
    """The next ``n`` deliveries of ``consumer``, waiting up to 5 s for them."""
    taken: list[MessageProxy] = []
    deadline = time.monotonic() + 5
    while len(taken) < n and time.monotonic() < deadline:
        delivery = next(consumer)
        if delivery is not None:
            taken.append(delivery)
    assert len(taken) == n
    return taken
