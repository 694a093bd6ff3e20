"""The script that finishes a job's delivery: acks it and writes its outcome in one step, and
never leaves a job `running` because another delivery of it finished first."""

from __future__ import annotations

import json

import pytest
import redis
from dramatiq import Message
from dramatiq.broker import MessageProxy

from middleware.state import keys
from middleware.state.scripts import scripts_for
from middleware.state.settlement import finish_call

pytestmark = pytest.mark.integration

WORKER = "worker-1"


def delivery(redis_client: redis.Redis, *, held: bool, state: str) -> MessageProxy:
    message = Message(
        queue_name="default",
        actor_name="count_run",
        args=("t",),
        kwargs={},
        options={"redis_message_id": "rid-1"},
        message_id="job-1",
    )
    redis_client.hset(keys.queue_messages_key("default"), "rid-1", message.encode())
    if held:
        redis_client.sadd(keys.acks_key(WORKER, "default"), "rid-1")
    redis_client.hset(keys.job_key("job-1"), "state", state)
    return MessageProxy(message)


def finish(redis_client: redis.Redis, proxy: MessageProxy) -> int:
    script_keys, args = finish_call(
        proxy,
        broker_id=WORKER,
        entry={"n": 2, "outcome": "succeeded"},
        fields={"state": "succeeded", "finished_at": 5},
        job_ttl_s=60,
    )
    return int(scripts_for(redis_client).finish(keys=script_keys, args=args))


def test_a_held_delivery_is_acked_with_its_outcome(redis_client: redis.Redis) -> None:
    proxy = delivery(redis_client, held=True, state="running")
    assert finish(redis_client, proxy) == 1
    assert redis_client.hget(keys.job_key("job-1"), "state") == b"succeeded"
    assert redis_client.hlen(keys.queue_messages_key("default")) == 0
    assert json.loads(redis_client.hget(keys.attempts_key("job-1"), "2") or b"{}")["n"] == 2


def test_a_delivery_no_longer_held_still_ends_a_job_left_running(
    redis_client: redis.Redis,
) -> None:
    # Another delivery of the job acked it, and this one had marked the job running again since
    # (seen in tests/reliability after a Redis outage longer than the heartbeat timeout).
    proxy = delivery(redis_client, held=False, state="running")
    assert finish(redis_client, proxy) == 2
    assert redis_client.hget(keys.job_key("job-1"), "state") == b"succeeded"


def test_a_delivery_no_longer_held_leaves_a_job_that_ended_alone(
    redis_client: redis.Redis,
) -> None:
    proxy = delivery(redis_client, held=False, state="dead_lettered")
    assert finish(redis_client, proxy) == 0
    assert redis_client.hget(keys.job_key("job-1"), "state") == b"dead_lettered"
    assert redis_client.hlen(keys.attempts_key("job-1")) == 0
