"""An actor's send(): Dramatiq's enqueue and the new job's ``queued`` record, in one round trip."""

from __future__ import annotations

import time

import pytest
import redis

import workers
from middleware.state import keys
from middleware.state.jobs import History, search_jobs
from tests.support.dramatiq_option_actors import flaky_with_one_retry
from tests.support.round_trips import RoundTrips

pytestmark = pytest.mark.integration


def test_send_enqueues_the_message_and_records_the_new_job_queued(
    redis_url: str, redis_client: redis.Redis
) -> None:
    message = flaky_with_one_retry.send("tag")
    job = History(redis_client).show(message.message_id)
    assert job is not None
    assert (job["state"], job["queue"], job["actor"]) == (
        "queued", "default", flaky_with_one_retry.actor_name
    )  # fmt: skip
    assert (
        redis_client.hget(keys.queue_messages_key("default"), message.options["redis_message_id"])
        == message.encode()
    )
    rows, _ = search_jobs(redis_client, state="queued", queue="default")
    assert [row["job_id"] for row in rows] == [message.message_id]


def test_send_makes_exactly_one_round_trip_to_redis(
    redis_url: str, redis_client: redis.Redis
) -> None:
    flaky_with_one_retry.send("warm-up")
    trips = RoundTrips(workers.broker.client)
    try:
        flaky_with_one_retry.send("counted")
    finally:
        trips.close()
    assert trips.count == 1, trips.sent


def test_sends_from_many_threads_at_once_share_round_trips_and_each_makes_its_job(
    redis_url: str, redis_client: redis.Redis
) -> None:
    import threading

    sent: list[str] = []
    barrier = threading.Barrier(8)

    def send_many(thread: int) -> None:
        barrier.wait()
        for i in range(25):
            sent.append(flaky_with_one_retry.send(f"{thread}-{i}").message_id)

    trips = RoundTrips(redis_client)
    try:
        threads = [threading.Thread(target=send_many, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        trips.close()
    assert len(set(sent)) == 200
    assert redis_client.llen(keys.queue_key("default")) == 200
    rows, _ = search_jobs(redis_client, state="queued", queue="default", limit=1000)
    assert {row["job_id"] for row in rows} == set(sent)
    assert trips.count < 200, trips.count


def test_a_delayed_first_send_is_recorded_queued_on_its_own_queue(
    redis_url: str, redis_client: redis.Redis
) -> None:
    message = flaky_with_one_retry.send_with_options(args=("later",), delay=60_000)
    job = History(redis_client).show(message.message_id)
    assert job is not None
    assert (job["state"], job["queue"]) == ("queued", "default")
    assert redis_client.llen(keys.queue_key("default.DQ")) == 1


def test_a_message_of_a_known_job_is_enqueued_without_touching_its_record(
    redis_url: str, redis_client: redis.Redis
) -> None:
    first = flaky_with_one_retry.send("known")
    redis_client.hset(keys.job_key(first.message_id), "state", "retrying")
    # A retry coming due from the delay queue carries evalq's options.
    workers.broker.enqueue(first.copy(options={"evalq_attempts": 1}))
    job = History(redis_client).show(first.message_id)
    assert job is not None and job["state"] == "retrying"
    assert redis_client.llen(keys.queue_key("default")) == 2


def test_the_same_delivery_sent_twice_is_enqueued_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from middleware.state.broker import send_call
    from middleware.state.scripts import scripts_for

    message = flaky_with_one_retry.message("resent").copy(options={"redis_message_id": "d-1"})
    script_keys, args = send_call(message, job_ttl_s=60)
    send = scripts_for(redis_client).send
    assert send(keys=script_keys, args=args) == 1
    assert send(keys=script_keys, args=args) == 0  # its reply was lost: sent again
    assert redis_client.lrange(keys.queue_key("default"), 0, -1) == [b"d-1"]


def test_a_send_waits_out_a_redis_outage_and_makes_one_job(
    redis_url: str, redis_client: redis.Redis
) -> None:
    import threading
    from urllib.parse import urlparse

    from tests.support.tcp_proxy import TcpProxy
    from workers.bootstrap import repoint

    plain = urlparse(redis_url)
    with TcpProxy((plain.hostname or "127.0.0.1", plain.port or 6379)) as proxy:
        repoint(workers.broker, proxy.url)
        try:
            flaky_with_one_retry.send("before the outage")
            cutter = threading.Timer(0.0, proxy.cut, args=(1.5,))
            cutter.start()
            cutter.join()
            started = time.monotonic()
            message = flaky_with_one_retry.send("during the outage")
            waited = time.monotonic() - started
        finally:
            repoint(workers.broker, redis_url)
    job = History(redis_client).show(message.message_id)
    assert job is not None and job["state"] == "queued"
    ids = redis_client.lrange(keys.queue_key("default"), 0, -1)
    assert ids.count(message.options["redis_message_id"].encode()) == 1
    assert len(ids) == 2
    assert waited > 1.0  # it met the outage, and waited it out
