"""The abort script: what it does to a job in each state, against a real Redis."""

from __future__ import annotations

import pytest
import redis

from middleware.state import keys
from middleware.state.aborts import request_abort
from middleware.state.job_states import (
    ABORTED,
    NOT_STARTED_STATES,
    QUEUED,
    RUNNING,
    STATES,
    TERMINAL_STATES,
)

pytestmark = pytest.mark.integration

JOB = "4b1c9f9e-8f0a-4d55-9b1e-000000000001"


def job_fields(client: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(keys.job_key(JOB)).items()}


def test_every_state_is_either_finished_not_started_or_running() -> None:
    assert set(STATES) == TERMINAL_STATES | NOT_STARTED_STATES | {RUNNING}
    assert not TERMINAL_STATES & NOT_STARTED_STATES


def test_an_unknown_job_is_reported_and_nothing_is_written(redis_client: redis.Redis) -> None:
    outcome = request_abort(redis_client, JOB, ttl_s=60)
    assert (outcome.result, outcome.state_before) == ("unknown", None)
    assert redis_client.keys("*") == []


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_a_finished_job_is_left_as_it_is(redis_client: redis.Redis, state: str) -> None:
    redis_client.hset(keys.job_key(JOB), mapping={"state": state, "queue": "default", "actor": "a"})
    before = job_fields(redis_client)

    outcome = request_abort(redis_client, JOB, ttl_s=60)

    assert (outcome.result, outcome.state_before, outcome.requested) == ("finished", state, False)
    assert job_fields(redis_client) == before
    assert not redis_client.exists(keys.abort_key(JOB))


@pytest.mark.parametrize("state", sorted(NOT_STARTED_STATES))
def test_a_job_that_has_not_started_is_aborted_at_once_and_the_workers_are_told(
    redis_client: redis.Redis, state: str
) -> None:
    redis_client.hset(keys.job_key(JOB), mapping={"state": state, "queue": "default", "actor": "a"})
    listener = redis_client.pubsub()
    listener.subscribe(keys.ABORT_CHANNEL)
    listener.get_message(timeout=1)  # the subscription's confirmation

    outcome = request_abort(redis_client, JOB, ttl_s=60)

    assert (outcome.result, outcome.state_before, outcome.notified) == ("requested", state, 1)
    fields = job_fields(redis_client)
    assert (fields["state"], fields["category"]) == (ABORTED, "aborted")
    assert "abort_requested_at" in fields
    assert 0 < redis_client.ttl(keys.abort_key(JOB)) <= 60
    published = listener.get_message(timeout=1)
    assert published is not None and published["data"] == JOB.encode()
    listener.close()


def test_a_running_job_keeps_its_state_until_its_worker_stops_it(
    redis_client: redis.Redis,
) -> None:
    redis_client.hset(keys.job_key(JOB), mapping={"state": RUNNING, "queue": "q", "actor": "a"})

    outcome = request_abort(redis_client, JOB, ttl_s=60)

    assert (outcome.result, outcome.state_before, outcome.queue, outcome.actor) == (
        "requested", RUNNING, "q", "a",
    )  # fmt: skip
    fields = job_fields(redis_client)
    assert fields["state"] == RUNNING and "category" not in fields
    assert "abort_requested_at" in fields
    assert redis_client.exists(keys.abort_key(JOB))


def test_a_record_without_a_state_counts_as_queued(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.job_key(JOB), mapping={"claimed_at": 1})
    outcome = request_abort(redis_client, JOB, ttl_s=60)
    assert (outcome.result, outcome.state_before) == ("requested", QUEUED)
    assert job_fields(redis_client)["state"] == ABORTED
