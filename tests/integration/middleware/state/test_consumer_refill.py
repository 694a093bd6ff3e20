"""The consumer's refill: once it holds all its prefetch, it fetches again as soon as the worker
threads have settled a quarter of it, not after a blind sleep, and it never fetches past its
prefetch. Against a real Redis, with evalq's broker."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from dramatiq.broker import MessageProxy

from middleware.state.broker import EvalqRedisBroker
from tests.support.consumers import noop_broker, send_noops, take

pytestmark = pytest.mark.integration

QUEUE = "refill"
PREFETCH = 8  # refills once 2 are settled


@pytest.fixture
def broker(redis_client: redis.Redis) -> EvalqRedisBroker:
    broker = noop_broker(redis_client, QUEUE)
    send_noops(broker, QUEUE, 3 * PREFETCH)
    return broker


def ack_later(consumer: Any, deliveries: list[MessageProxy], *, after_s: list[float]) -> None:
    def run() -> None:
        started = time.monotonic()
        for delivery, at in zip(deliveries, after_s, strict=True):
            time.sleep(max(0.0, started + at - time.monotonic()))
            consumer.ack(delivery)

    threading.Thread(target=run, daemon=True).start()


def test_a_full_consumer_fetches_once_a_quarter_of_its_prefetch_is_settled(
    broker: EvalqRedisBroker,
) -> None:
    consumer = broker.consume(QUEUE, prefetch=PREFETCH, timeout=10_000)
    held = take(consumer, PREFETCH)
    # One settled delivery is not enough to refill; the second one is.
    ack_later(consumer, held[:2], after_s=[0.1, 0.4])

    started = time.monotonic()
    delivery = next(consumer)
    waited = time.monotonic() - started

    assert delivery is not None and delivery.message_id not in {d.message_id for d in held}
    assert 0.35 <= waited < 2.0  # woken by the second ack, long before the 10 s timeout


def test_a_full_consumer_waits_at_most_its_timeout_and_fetches_nothing(
    broker: EvalqRedisBroker, redis_client: redis.Redis
) -> None:
    consumer = broker.consume(QUEUE, prefetch=PREFETCH, timeout=300)
    take(consumer, PREFETCH)
    left = redis_client.llen(f"dramatiq:{QUEUE}")

    started = time.monotonic()
    assert next(consumer) is None
    waited = time.monotonic() - started

    assert 0.25 <= waited < 1.5
    assert redis_client.llen(f"dramatiq:{QUEUE}") == left  # nothing fetched past the prefetch
    assert consumer.outstanding_message_count == PREFETCH


def test_a_nack_frees_room_as_an_ack_does(broker: EvalqRedisBroker) -> None:
    consumer = broker.consume(QUEUE, prefetch=PREFETCH, timeout=10_000)
    held = take(consumer, PREFETCH)
    for delivery in held[:2]:
        delivery.fail()
    threading.Timer(0.1, lambda: [consumer.nack(d) for d in held[:2]]).start()

    started = time.monotonic()
    assert next(consumer) is not None
    assert time.monotonic() - started < 2.0
