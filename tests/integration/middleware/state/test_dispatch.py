"""Dramatiq's dispatch script (a consumer's fetches, Dramatiq's acks) goes through the broker's
group commit: over the one connection the broker keeps, loaded again after Redis forgot it."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from middleware.state import keys
from middleware.state.broker import EvalqRedisBroker
from tests.support.consumers import noop_broker, send_noops, take

pytestmark = pytest.mark.integration

QUEUE = "dispatch"


@pytest.fixture
def broker(redis_client: redis.Redis) -> EvalqRedisBroker:
    return noop_broker(redis_client, QUEUE)


def test_a_consumer_fetches_and_acks_over_the_connection_the_broker_keeps(
    broker: EvalqRedisBroker, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_noops(broker, QUEUE, 2)
    consumer = broker.consume(QUEUE, prefetch=8, timeout=100)
    for delivery in take(consumer, 2):  # warm: Dramatiq asks Redis its Lua stack size once
        consumer.ack(delivery)
    pool = redis_client.connection_pool
    checkouts: list[Any] = []
    original = pool.get_connection
    monkeypatch.setattr(pool, "get_connection", lambda *a, **k: checkouts.append(a) or original())
    send_noops(broker, QUEUE, 4)
    for delivery in take(consumer, 4):
        consumer.ack(delivery)
    monkeypatch.undo()
    assert checkouts == []  # none of it through the pool's per-command path
    assert redis_client.hlen(keys.queue_messages_key(QUEUE)) == 0  # every delivery acked


def test_a_consumer_fetches_after_redis_forgot_the_dispatch_script(
    broker: EvalqRedisBroker, redis_client: redis.Redis
) -> None:
    send_noops(broker, QUEUE, 4)
    consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
    first = take(consumer, 2)
    redis_client.script_flush()  # as a Redis restart does
    for delivery in first:
        consumer.ack(delivery)
    rest = take(consumer, 2)
    assert {d.message_id for d in first}.isdisjoint(d.message_id for d in rest)
    for delivery in rest:
        consumer.ack(delivery)
    assert redis_client.hlen(keys.queue_messages_key(QUEUE)) == 0
