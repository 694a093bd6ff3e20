"""A settlement the connection loses leaves its delivery to the orphan reclaim.

The consumer counts a delivery as held in memory from the fetch to its ack, nack or requeue
(``EvalqRedisBroker.held_deliveries``); the reclaim (``middleware.redelivery``) puts back only
deliveries in the worker's acks set that the process does not hold. When the settling call
fails, the delivery is still in the acks set, and the process has let go of it: it must stop
counting as held, or it would stay in the acks set until the worker stops.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware.time_limit import TimeLimitExceeded
from redis.backoff import NoBackoff
from redis.retry import Retry

from middleware.core.attempts import Attempt
from middleware.outcomes import Outcomes
from middleware.state import keys
from middleware.state.broker import EvalqRedisBroker
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.consumers import noop_broker, send_noops, take
from tests.support.interrupts import interrupting_at
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

QUEUE = "lost-settlements"


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TcpProxy]:
    with TcpProxy.to_redis(redis_url) as front:
        yield front


@pytest.fixture
def broker(proxy: TcpProxy) -> Iterator[EvalqRedisBroker]:
    client = redis.Redis.from_url(proxy.url, socket_connect_timeout=0.5,
                                  retry=Retry(NoBackoff(), 0))  # fmt: skip
    broker = noop_broker(client, QUEUE)
    send_noops(broker, QUEUE, 1)
    yield broker
    client.close()


SETTLEMENTS: dict[str, Callable[[Any, Any], None]] = {
    "ack": lambda consumer, delivery: consumer.ack(delivery),
    "nack": lambda consumer, delivery: consumer.nack(delivery),
    "requeue": lambda consumer, delivery: consumer.requeue([delivery]),
}


@pytest.mark.parametrize("settle", SETTLEMENTS.values(), ids=SETTLEMENTS.keys())
def test_a_settlement_that_fails_on_a_cut_connection_lets_go_of_the_delivery(
    broker: EvalqRedisBroker,
    proxy: TcpProxy,
    redis_client: redis.Redis,
    settle: Callable[[Any, Any], None],
) -> None:
    consumer = broker.consume(QUEUE, prefetch=4, timeout=300)
    (delivery,) = take(consumer, 1)
    delivery_id = delivery.options["redis_message_id"]
    assert delivery_id in broker.held_deliveries

    proxy.cut(30)
    with pytest.raises((ConnectionClosed, redis.ConnectionError)):
        settle(consumer, delivery)

    assert delivery_id not in broker.held_deliveries
    acks = keys.acks_key(broker.broker_id, QUEUE)
    assert redis_client.sismember(acks, delivery_id), "the delivery is no longer in Redis"


def test_a_posted_outcome_keeps_its_delivery_held_until_it_lands_across_an_outage(
    broker: EvalqRedisBroker, proxy: TcpProxy, redis_client: redis.Redis
) -> None:
    # A worker thread posts its job's outcome and goes on (middleware.outcomes). While Redis is
    # away the outcome waits to be sent again, and the process must still hold the delivery:
    # let go of, it would be taken for an orphan and its finished job run again.
    history = History(broker.client)
    outcomes = Outcomes(history=history, dead_letters=DeadLetters(broker.client))
    consumer = broker.consume(QUEUE, prefetch=4, timeout=300)
    (delivery,) = take(consumer, 1)
    delivery_id = delivery.options["redis_message_id"]
    acks = keys.acks_key(broker.broker_id, QUEUE)

    proxy.cut(1.0)
    outcomes.succeed(broker, delivery, Attempt(n=1, budget_n=1, started_at=0, crashes=0))
    consumer.ack(delivery)  # Dramatiq's ack comes next: skipped, the outcome acks it
    time.sleep(0.5)
    assert delivery_id in broker.held_deliveries
    assert redis_client.sismember(acks, delivery_id)

    assert history.commits.drain(10) == 0
    assert delivery_id not in broker.held_deliveries
    assert not redis_client.sismember(acks, delivery_id)
    job = redis_client.hgetall(keys.job_key(delivery.message_id))
    assert job[b"state"] == b"succeeded"


#: What posting a job's outcome runs (middleware.outcomes, GroupCommit.post, Posts.add).
_POSTING = ("Outcomes._post", "Outcomes._landing", "mark_settled", "begin_landing",
            "Outcomes._settle.<locals>.post", "GroupCommit.post", "_Call.__init__", "Posts.add")


def test_a_late_interrupt_anywhere_in_posting_an_outcome_still_posts_it_once(
    broker: EvalqRedisBroker, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # A time limit that fires as the actor returns lands in the recording of its outcome.
    # Marked settled with no call posted, the delivery would be held for ever: never acked,
    # never taken back by the orphan reclaim. Posted twice, the job would be finished twice.
    history = History(broker.client)
    outcomes = Outcomes(history=history, dead_letters=DeadLetters(broker.client))
    consumer = broker.consume(QUEUE, prefetch=1, timeout=300)
    send_noops(broker, QUEUE, 60)
    acks = keys.acks_key(broker.broker_id, QUEUE)
    for point in range(2, 61):
        (delivery,) = take(consumer, 1)
        delivery_id = delivery.options["redis_message_id"]
        sys.setprofile(interrupting_at(point, _POSTING, TimeLimitExceeded))
        try:
            outcomes.succeed(broker, delivery, Attempt(n=1, budget_n=1, started_at=0,
                                                       crashes=0))  # fmt: skip
            interrupted = False
        except TimeLimitExceeded:
            interrupted = True
        finally:
            sys.setprofile(None)
        consumer.ack(delivery)
        assert history.commits.drain(5) == 0, f"left posted at {point}"
        assert delivery_id not in broker.held_deliveries, f"held for ever at {point}"
        assert not redis_client.sismember(acks, delivery_id), point
        job_id = delivery.message_id
        assert redis_client.hget(keys.job_key(job_id), "state") == b"succeeded", point
        assert len(history.attempts(job_id)) == 1, point
        # Posted twice, the second finish finds the delivery acked by the first.
        assert "no longer held" not in caplog.text, f"posted twice at {point}"
        if not interrupted:  # every point of the posting has had its interrupt
            assert point > 5
            return
    pytest.fail("the posting never ran to its end")
