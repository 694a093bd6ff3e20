"""Delayed messages (a retry waiting out its backoff) held by a live worker survive Redis going
away: the consumer that restarts after the connection error keeps them and sends each on at its
eta, once; one that falls due while Redis is away waits for it. At shutdown they go back to the
delay queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.worker import ConsumerThread

from middleware.state import broker as broker_module
from middleware.state import keys
from middleware.state.broker import EvalqRedisBroker
from tests.support.plain_actors import count_run
from tests.support.pools import WorkerPools
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

DELAY_MS = 5000


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    with TcpProxy.to_redis(redis_url) as front:
        yield front


def held_by_a_worker(client: redis.Redis, delivery: str) -> bool:
    return any(client.sismember(k, delivery) for k in client.scan_iter("dramatiq:__acks__.*"))


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_delayed_message_held_through_a_network_cut_runs_once_at_its_eta(
    redis_client: redis.Redis, proxy: TcpProxy, tmp_path: Path
) -> None:
    pools = WorkerPools(redis_url=proxy.url, log_dir=tmp_path / "logs")
    try:
        pools.start("default", modules=("tests.support.plain_actors",))
        sent_ms = int(time.time() * 1000)
        message = count_run.send_with_options(args=("through-a-cut",), delay=DELAY_MS)
        delivery = message.options["redis_message_id"]
        wait_until(lambda: held_by_a_worker(redis_client, delivery), 10, "never fetched")
        proxy.cut(2.0)  # the delay queue's consumer meets a connection error and restarts
        wait_until(lambda: redis_client.llen("test:runs:through-a-cut") > 0, 20, "never ran")
        time.sleep(1.0)  # a second run would come now
        log = pools.log("pool1")
    finally:
        pools.stop()
    assert "ConsumerThread(default.DQ)] [CRITICAL] Consumer encountered a connection error" in log
    runs = [int(r) for r in redis_client.lrange("test:runs:through-a-cut", 0, -1)]
    assert len(runs) == 1 and runs[0] >= sent_ms + DELAY_MS
    assert redis_client.hget(keys.job_key(message.message_id), "state") == b"succeeded"
    assert not held_by_a_worker(redis_client, delivery)


def test_a_worker_stopping_puts_its_delayed_messages_back_on_the_delay_queue(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    pools = WorkerPools(redis_url=redis_url, log_dir=tmp_path / "logs")
    try:
        pools.start("default", modules=("tests.support.plain_actors",))
        message = count_run.send_with_options(args=("put-back",), delay=60_000)
        delivery = message.options["redis_message_id"]
        wait_until(lambda: held_by_a_worker(redis_client, delivery), 10, "never fetched")
    finally:
        pools.stop()
    assert not held_by_a_worker(redis_client, delivery)
    assert redis_client.lrange(keys.queue_key("default.DQ"), 0, -1) == [delivery.encode()]
    assert redis_client.llen("test:runs:put-back") == 0


class _DueMessageSender(ConsumerThread):
    """A consumer thread sending a due delayed message on (its only use of ``enqueue``)."""

    def __init__(self, broker: EvalqRedisBroker, message: dramatiq.Message[Any]) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.sender, self.message = broker, message
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.sender.enqueue(self.message)
        except BaseException as error:  # reported by the test
            self.error = error


def test_a_due_delayed_message_waits_for_redis_past_a_sends_patience(
    redis_client: redis.Redis, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "SEND_PATIENCE_S", 0.3)
    client = redis.Redis.from_url(proxy.url, socket_timeout=1, socket_connect_timeout=1)
    broker = EvalqRedisBroker(client=client, middleware=[], job_ttl_s=60)

    def due(tag: str) -> dramatiq.Message[Any]:
        return dramatiq.Message(
            queue_name="default", actor_name="count_run", args=(tag,), kwargs={}, options={}
        )

    proxy.cut(2.0)
    with pytest.raises(redis.ConnectionError):
        broker.enqueue(due("an-ordinary-send"))  # gives up after its patience
    consumer = _DueMessageSender(broker, due("due-while-redis-is-away"))
    consumer.start()
    consumer.join(timeout=15)
    assert not consumer.is_alive() and consumer.error is None
    assert redis_client.llen(keys.queue_key("default")) == 1
    client.close()
