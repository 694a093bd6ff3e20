"""Settling a failed attempt's delivery: the retry script, against a real Redis and a real
Dramatiq consumer, and the settle loop across a Redis outage."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker

from middleware.state import keys, settlement
from middleware.state.job_states import QUEUED, RETRYING, attempt_record
from middleware.state.scripts import scripts_for
from middleware.state.settlement import delayed_retry, retry_call, settle
from tests.support.dead_letters import BATCH, NOW, make_message
from workers import embedded_redis
from workers.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.integration

BROKER_ID = "3f0c3c8e-0000-4000-8000-000000000002"


def deliver(client: redis.Redis, message: dramatiq.Message[Any]) -> MessageProxy:
    """A delivery in the state Dramatiq's fetch leaves it: payload stored, id in this worker's
    acks set."""
    redis_message_id = str(uuid.uuid4())
    delivered = message.copy(options={"redis_message_id": redis_message_id})
    client.hset(keys.queue_messages_key(message.queue_name), redis_message_id, delivered.encode())
    client.sadd(keys.acks_key(BROKER_ID, message.queue_name), redis_message_id)
    return MessageProxy(delivered)


def retry(
    client: redis.Redis,
    delivery: MessageProxy,
    *,
    state: str = RETRYING,
    broker_id: str = BROKER_ID,
) -> tuple[int, str]:
    """Run the retry script for ``delivery``; returns its reply and the retry's delivery id."""
    eta = NOW + 5_000
    redis_message_id, data = delayed_retry(delivery, eta=eta, carried={"evalq_attempt": 1})
    entry = attempt_record(
        1, started_at=NOW - 900, finished_at=NOW, outcome="retried", category="timeout",
        error_type="openai.APITimeoutError", error_message="Request timed out.",
    )  # fmt: skip
    call_keys, args = retry_call(
        delivery, broker_id=broker_id, redis_message_id=redis_message_id, data=data,
        entry=entry, eta=eta, job_ttl_s=3600, state=state,
    )  # fmt: skip
    return scripts_for(client).retry(keys=call_keys, args=args), redis_message_id


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def test_a_held_delivery_is_acked_and_its_retry_put_on_the_delay_queue(
    redis_client: redis.Redis,
) -> None:
    delivery = deliver(redis_client, make_message())

    replied, retry_id = retry(redis_client, delivery)

    assert replied == 1
    held_id = delivery.options["redis_message_id"]
    assert not redis_client.sismember(keys.acks_key(BROKER_ID, BATCH), held_id)
    assert not redis_client.hexists(keys.queue_messages_key(BATCH), held_id)
    delay_queue = keys.delay_queue_name(BATCH)
    assert redis_client.lrange(keys.queue_key(delay_queue), 0, -1) == [retry_id.encode()]
    stored = dramatiq.Message.decode(
        redis_client.hget(keys.queue_messages_key(delay_queue), retry_id)  # type: ignore[arg-type]
    )
    assert (stored.message_id, stored.options["eta"]) == (delivery.message_id, NOW + 5_000)
    state = redis_client.hgetall(keys.job_key(delivery.message_id))
    assert state[b"state"] == RETRYING.encode()
    assert (state[b"category"], state[b"retry_at"]) == (b"timeout", str(NOW + 5_000).encode())
    timeline = redis_client.hgetall(keys.attempts_key(delivery.message_id))
    assert json.loads(timeline[b"1"])["outcome"] == "retried"
    assert 0 < redis_client.ttl(keys.job_key(delivery.message_id)) <= 3600


def test_a_throttled_job_is_rescheduled_in_the_state_it_is_given(
    redis_client: redis.Redis,
) -> None:
    delivery = deliver(redis_client, make_message())
    assert retry(redis_client, delivery, state=QUEUED)[0] == 1
    assert redis_client.hget(keys.job_key(delivery.message_id), "state") == QUEUED.encode()


def test_a_delivery_no_longer_held_is_left_alone_and_nothing_is_written(
    redis_client: redis.Redis,
) -> None:
    delivery = deliver(redis_client, make_message())
    # Requeued after a heartbeat timeout: another worker owns it now.
    redis_client.srem(keys.acks_key(BROKER_ID, BATCH), delivery.options["redis_message_id"])
    before = snapshot(redis_client)

    assert retry(redis_client, delivery)[0] == 0

    assert snapshot(redis_client) == before


def test_a_delivery_is_settled_only_once(redis_client: redis.Redis) -> None:
    delivery = deliver(redis_client, make_message())
    assert retry(redis_client, delivery)[0] == 1
    assert retry(redis_client, delivery)[0] == 0
    assert redis_client.llen(keys.queue_key(keys.delay_queue_name(BATCH))) == 1


def test_a_delivery_fetched_by_a_real_dramatiq_consumer_is_retried_from_its_delay_queue(
    redis_client: redis.Redis,
) -> None:
    broker = RedisBroker(client=redis_client, middleware=[])
    broker.enqueue(make_message())
    consumer = broker.consume(BATCH, prefetch=1, timeout=100)
    delivery = next(d for d in (next(consumer) for _ in range(50)) if d is not None)

    replied, _ = retry(redis_client, delivery, broker_id=broker.broker_id)

    assert replied == 1
    assert redis_client.scard(keys.acks_key(broker.broker_id, BATCH)) == 0
    consumer.ack(delivery)  # the worker's own ack afterwards is a harmless no-op
    delayed = broker.consume(keys.delay_queue_name(BATCH), prefetch=1, timeout=100)
    again = next(d for d in (next(delayed) for _ in range(50)) if d is not None)
    assert again.message_id == delivery.message_id
    assert again.options["evalq_attempt"] == 1


def test_settle_returns_what_the_operation_returns_and_lets_other_errors_through() -> None:
    proxy = MessageProxy(make_message())
    assert settle(proxy, lambda: 7) == 7
    with pytest.raises(redis.ResponseError):
        settle(proxy, lambda: (_ for _ in ()).throw(redis.ResponseError("WRONGTYPE")))


def test_a_settlement_waits_while_redis_is_down_and_settles_once_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settlement, "SETTLE_PATIENCE_S", 0.2)
    server = EmbeddedRedis(data_dir=tmp_path, persist=True)
    url = server.start()
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
    try:
        delivery = deliver(client, make_message())
        port = client.connection_pool.connection_kwargs["port"]
        server.stop()  # the append-only file keeps the delivery for the restart
        outcome: list[Any] = []
        waiting = threading.Thread(target=lambda: outcome.append(
            settle(delivery, lambda: retry(client, delivery)[0])
        ))  # fmt: skip
        with caplog.at_level(logging.CRITICAL, logger="evalq.error_policy"):
            waiting.start()
            time.sleep(1.0)
            assert waiting.is_alive() and not outcome  # still trying, the delivery unsettled
            # Back on the same address, as a restarted Redis is.
            monkeypatch.setattr(embedded_redis, "_free_port", lambda: port)
            server.start()
            waiting.join(timeout=15)
        assert outcome == [1]
        assert client.llen(keys.queue_key(keys.delay_queue_name(BATCH))) == 1
        assert "cannot settle" in caplog.text and "still trying" in caplog.text
    finally:
        client.close()
        server.stop()
