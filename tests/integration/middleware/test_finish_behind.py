"""A job's finish is written behind its worker thread: the thread goes on at once, the outcome
and the ack land with the next round trip, a finish that meets a Redis error is sent again (or
nacked when Redis refuses it), and a stopping worker waits for what is still on its way."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from dramatiq import Message
from dramatiq.broker import MessageProxy

from middleware.core.attempts import Attempt
from middleware.outcomes import Outcomes
from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from middleware.state.settlement import is_settled

pytestmark = pytest.mark.integration

BROKER_ID = "3f0c3c8e-0000-4000-8000-0000000000fb"


class _Broker:
    broker_id = BROKER_ID

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.nacked: list[tuple[str, str]] = []

    def do_nack(self, queue: str, redis_message_id: str) -> None:
        self.nacked.append((queue, redis_message_id))


def held_delivery(client: redis.Redis, job_id: str) -> MessageProxy:
    """A delivery as Dramatiq's fetch leaves it, of a job recorded running."""
    message = Message(queue_name="default", actor_name="count_run", args=("t",), kwargs={},
                      options={"redis_message_id": f"rid-{job_id}"},
                      message_id=job_id)  # fmt: skip
    client.hset(keys.queue_messages_key("default"), f"rid-{job_id}", message.encode())
    client.sadd(keys.acks_key(BROKER_ID, "default"), f"rid-{job_id}")
    client.hset(keys.job_key(job_id), mapping={"state": "running", "queue": "default"})
    return MessageProxy(message)


def wait_for_state(client: redis.Redis, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 5
    while client.hget(keys.job_key(job_id), "state") != state.encode():
        assert time.monotonic() < deadline, f"job {job_id} never became {state}"
        time.sleep(0.01)


def outcomes_on(client: redis.Redis) -> Outcomes:
    return Outcomes(history=History(client), dead_letters=DeadLetters(client))


ATTEMPT = Attempt(n=1, budget_n=1, started_at=1, crashes=0)


def test_a_success_is_acked_with_its_outcome_after_the_thread_went_on(
    redis_client: redis.Redis,
) -> None:
    outcomes, broker = outcomes_on(redis_client), _Broker(redis_client)
    proxy = held_delivery(redis_client, "job-behind")

    outcomes.succeed(broker, proxy, ATTEMPT)  # type: ignore[arg-type]

    assert is_settled(proxy)  # Dramatiq's own ack is skipped at once
    assert outcomes.drain(5) == 0
    assert redis_client.hget(keys.job_key("job-behind"), "state") == b"succeeded"
    assert redis_client.scard(keys.acks_key(BROKER_ID, "default")) == 0
    assert redis_client.hlen(keys.queue_messages_key("default")) == 0


def test_a_finish_that_met_a_redis_error_is_sent_again(redis_client: redis.Redis) -> None:
    outcomes, broker = outcomes_on(redis_client), _Broker(redis_client)
    proxy = held_delivery(redis_client, "job-again")
    commits = outcomes.history.commits
    real_send, failures = commits._send, []

    def failing_once(group: list[Any]) -> None:
        # The first send fails as a lost connection would; the next one goes through.
        if not failures:
            failures.append(group)
            for call in group:
                call.error = redis.ConnectionError("connection lost")
                call.finished = True
            return
        real_send(group)

    commits._send = failing_once  # type: ignore[method-assign]

    outcomes.succeed(broker, proxy, ATTEMPT)  # type: ignore[arg-type]

    wait_for_state(redis_client, "job-again", "succeeded")
    assert outcomes.drain(5) == 0
    assert len(failures) == 1 and broker.nacked == []
    assert redis_client.scard(keys.acks_key(BROKER_ID, "default")) == 0


def test_a_finish_redis_refuses_nacks_the_delivery(redis_client: redis.Redis) -> None:
    outcomes, broker = outcomes_on(redis_client), _Broker(redis_client)
    proxy = held_delivery(redis_client, "job-refused")
    commits = outcomes.history.commits

    def refused(group: list[Any]) -> None:
        for call in group:
            call.error = redis.ResponseError("ERR the script failed")
            call.finished = True

    commits._send = refused  # type: ignore[method-assign]

    outcomes.succeed(broker, proxy, ATTEMPT)  # type: ignore[arg-type]

    assert outcomes.drain(5) == 0
    assert broker.nacked == [("default", "rid-job-refused")]


def test_a_stopping_worker_waits_for_finishes_on_their_way_and_says_how_many_are_left(
    redis_client: redis.Redis,
) -> None:
    outcomes, broker = outcomes_on(redis_client), _Broker(redis_client)
    proxy = held_delivery(redis_client, "job-unwritten")
    commits = outcomes.history.commits
    commits._send = lambda group: time.sleep(60)  # type: ignore[method-assign]  # Redis hangs

    outcomes.succeed(broker, proxy, ATTEMPT)  # type: ignore[arg-type]

    started = time.monotonic()
    assert outcomes.drain(0.3) == 1
    assert 0.25 <= time.monotonic() - started < 2
