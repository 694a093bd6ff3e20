"""The dead-letter store: the single record of a dead job, in a real Redis."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from middleware.state import keys
from middleware.state.dead_letter_record import MAX_TRACEBACK_CHARS
from middleware.state.dead_letters import AckTarget, DeadLetters
from middleware.state.group_commit import GroupCommit
from tests.support.dead_letters import BATCH, LIVE, NOW, make_message, make_record

pytestmark = pytest.mark.integration

BROKER_ID = "3f0c3c8e-0000-4000-8000-000000000001"
OPENAI_KEY = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def store(redis_client: redis.Redis) -> DeadLetters:
    return DeadLetters(redis_client)


def deliver(client: redis.Redis, message: dramatiq.Message[Any]) -> AckTarget:
    """Put a delivery in the state Dramatiq's fetch leaves it: payload stored, id in acks."""
    redis_message_id = str(uuid.uuid4())
    delivered = message.copy(options={"redis_message_id": redis_message_id})
    client.hset(keys.queue_messages_key(message.queue_name), redis_message_id, delivered.encode())
    client.sadd(keys.acks_key(BROKER_ID, message.queue_name), redis_message_id)
    return AckTarget(
        acks_key=keys.acks_key(BROKER_ID, message.queue_name),
        messages_key=keys.queue_messages_key(message.queue_name),
        redis_message_id=redis_message_id,
    )


def fetch_one(consumer: Any) -> Any:
    """The next delivery of a Dramatiq consumer (which returns None while it waits)."""
    for _ in range(50):
        delivery = next(consumer)
        if delivery is not None:
            return delivery
    raise AssertionError("the consumer fetched nothing")


def job_state(client: redis.Redis, job_id: str) -> dict[str, str]:
    raw = client.hgetall(keys.job_key(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


# Writing and reading


def test_a_record_added_is_read_back_with_every_field(store: DeadLetters) -> None:
    record = make_record()
    assert store.add(record) is True
    assert store.get(record.id) == record


def test_record_ids_sort_by_the_time_of_death(store: DeadLetters) -> None:
    older, newer = make_record(dead_at=NOW - 1), make_record(dead_at=NOW)
    assert older.id < newer.id
    assert older.id.startswith(f"{NOW - 1:015d}-")


def test_an_unknown_or_malformed_id_reads_as_none(store: DeadLetters) -> None:
    assert store.get(f"{NOW:015d}-0123456789") is None
    assert store.get("../../etc/passwd") is None


def test_secrets_in_the_payload_are_redacted_at_any_depth(store: DeadLetters) -> None:
    message = make_message()
    message = message.copy(
        kwargs={
            "config": {
                "api_key": "abc123",
                "headers": {"Authorization": "Bearer abcdefghijkl", "X-Trace": "t-1"},
                "max_tokens": 256,
            },
            "accounts": [{"password": "hunter2", "user": "ann"}],
            "note": f"use {OPENAI_KEY} for the judge",
        }
    )
    record = make_record(message=message)
    store.add(record)

    stored = store.get(record.id)
    assert stored is not None
    kwargs = stored.payload["kwargs"]
    assert kwargs["config"]["api_key"] == "[redacted]"
    assert kwargs["config"]["headers"] == {"Authorization": "[redacted]", "X-Trace": "t-1"}
    assert kwargs["config"]["max_tokens"] == 256
    assert kwargs["accounts"] == [{"password": "[redacted]", "user": "ann"}]
    assert OPENAI_KEY not in kwargs["note"]
    assert kwargs["note"].startswith("use ") and kwargs["note"].endswith(" for the judge")
    assert stored.payload["args"] == list(message.args)


def test_keys_tokens_and_dsn_credentials_in_messages_and_tracebacks_are_redacted(
    store: DeadLetters,
) -> None:
    leaky = (
        f"Incorrect API key provided: {OPENAI_KEY};"
        " header Authorization: Bearer eyJhbGciOi.abc.def;"
        " cache redis://evalq:hunter2@cache:6379/0; sentry https://0123abcd@o1.ingest.sentry.io/42;"
        " db postgres://evalq:s3cret@db/evalq"
    )
    record = make_record(
        error_message=leaky,
        traceback=f"Traceback (most recent call last):\n  ...\nAuthenticationError: {leaky}",
        attempts=[
            {
                "n": 1,
                "started_at": NOW - 5,
                "finished_at": NOW,
                "outcome": "dead_lettered",
                "category": "auth",
                "error_type": "openai.AuthenticationError",
                "error_message": leaky,
            }
        ],
    )
    store.add(record)

    stored = store.get(record.id)
    assert stored is not None
    for text in (stored.error_message, stored.traceback, stored.attempts[0]["error_message"]):
        for secret in (OPENAI_KEY, "eyJhbGciOi", "hunter2", "0123abcd", "s3cret"):
            assert secret not in text
        assert "Incorrect API key provided" in text
        assert "cache:6379/0" in text
        assert "o1.ingest.sentry.io/42" in text


def test_a_password_only_url_in_an_error_message_is_redacted(store: DeadLetters) -> None:
    record = make_record(error_message="cannot reach redis://:hunter2@cache:6379/0")
    store.add(record)

    stored = store.get(record.id)
    assert stored is not None
    assert "hunter2" not in stored.error_message
    assert "cache:6379/0" in stored.error_message


def test_a_long_traceback_is_capped_keeping_its_end(store: DeadLetters) -> None:
    tail = "openai.BadRequestError: tools is not supported in this model"
    record = make_record(traceback="  frame\n" * 5_000 + tail)
    store.add(record)

    stored = store.get(record.id)
    assert stored is not None
    assert stored.traceback.endswith(tail)
    assert len(stored.traceback) < MAX_TRACEBACK_CHARS + 100


def test_adding_marks_the_job_dead_lettered(store: DeadLetters, redis_client: redis.Redis) -> None:
    record = make_record()
    redis_client.hset(keys.job_key(record.job_id), mapping={"state": "running", "queue": BATCH})
    store.add(record)

    state = job_state(redis_client, record.job_id)
    assert state["state"] == "dead_lettered"
    assert state["category"] == "model_capability"
    assert state["dead_letter_id"] == record.id
    assert state["finished_at"] == str(NOW)
    assert state["queue"] == BATCH
    assert redis_client.ttl(keys.job_key(record.job_id)) > 0


# Settling the delivery


def test_add_with_an_ack_writes_the_record_and_removes_the_delivery_from_the_broker(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    message = make_message()
    ack = deliver(redis_client, message)
    record = make_record(message=message)

    assert store.add(record, ack=ack) is True

    assert store.get(record.id) is not None
    assert not redis_client.sismember(ack.acks_key, ack.redis_message_id)
    assert not redis_client.hexists(ack.messages_key, ack.redis_message_id)


def test_add_with_a_stale_ack_writes_nothing_and_leaves_the_broker_alone(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    message = make_message()
    ack = deliver(redis_client, message)
    redis_client.srem(ack.acks_key, ack.redis_message_id)  # requeued: another worker owns it
    before = snapshot(redis_client)

    assert store.add(make_record(message=message), ack=ack) is False

    assert snapshot(redis_client) == before
    assert store.stats()["total"] == 0


def test_adds_posted_through_a_group_commit_each_ack_their_delivery_and_get_their_answer(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    commits = GroupCommit(store.client)
    messages = [make_message() for _ in range(6)]
    acks = [deliver(redis_client, message) for message in messages]
    records = [make_record(message=message) for message in messages]
    redis_client.srem(acks[2].acks_key, acks[2].redis_message_id)  # requeued meanwhile
    answers: dict[int, tuple[bool | None, BaseException | None]] = {}
    barrier = threading.Barrier(len(records))

    def add(i: int) -> None:
        barrier.wait()

        def done(written: bool | None, error: BaseException | None) -> None:
            answers[i] = (written, error)

        store.post(records[i], ack=acks[i], commits=commits, done=done)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(len(records))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert commits.drain(10) == 0

    assert answers == {i: (i != 2, None) for i in range(6)}
    assert [store.get(r.id) is not None for r in records] == [True, True, False, True, True, True]
    assert not any(redis_client.sismember(a.acks_key, a.redis_message_id) for a in acks)
    with pytest.raises(redis.ResponseError, match="already exists"):
        store.add(records[0])


def test_a_delivery_fetched_by_a_real_dramatiq_consumer_is_acked_by_the_dead_letter(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    broker = RedisBroker(client=redis_client, middleware=[])
    sent = broker.enqueue(make_message())
    consumer = broker.consume(BATCH, prefetch=1, timeout=100)
    delivery = fetch_one(consumer)
    ack = AckTarget.for_delivery(
        broker_id=broker.broker_id,
        queue=delivery.queue_name,
        redis_message_id=delivery.options["redis_message_id"],
    )

    assert store.add(make_record(message=sent), ack=ack) is True

    assert redis_client.hlen(keys.queue_messages_key(BATCH)) == 0
    assert redis_client.scard(keys.acks_key(broker.broker_id, BATCH)) == 0
    consumer.ack(delivery)  # the worker's own ack afterwards is a harmless no-op
    assert store.stats()["total"] == 1


# Listing


def test_records_are_listed_newest_first(store: DeadLetters) -> None:
    records = [make_record(dead_at=NOW + i) for i in (3, 1, 2)]
    for record in records:
        store.add(record)

    page = store.list()
    assert [r.dead_at for r in page.records] == [NOW + 3, NOW + 2, NOW + 1]
    assert page.next_cursor is None


def test_listing_filters_by_queue_category_and_both(store: DeadLetters) -> None:
    for queue in (BATCH, LIVE):
        for category in ("timeout", "auth"):
            store.add(make_record(queue=queue, category=category))

    def seen(**filters: Any) -> set[tuple[str, str]]:
        return {(r.queue, r.category) for r in store.list(**filters).records}

    assert seen(queue=LIVE) == {(LIVE, "timeout"), (LIVE, "auth")}
    assert seen(category="auth") == {(BATCH, "auth"), (LIVE, "auth")}
    assert seen(queue=LIVE, category="auth") == {(LIVE, "auth")}
    assert seen(queue="default") == set()


def test_listing_filters_by_a_time_window_including_its_ends(store: DeadLetters) -> None:
    for offset in range(10):
        store.add(make_record(dead_at=NOW + offset * 1000))

    page = store.list(since_ms=NOW + 2000, until_ms=NOW + 5000)
    assert [r.dead_at for r in page.records] == [NOW + 5000, NOW + 4000, NOW + 3000, NOW + 2000]


def test_pages_walk_every_record_once_while_new_records_arrive(store: DeadLetters) -> None:
    existing = [make_record(dead_at=NOW - i // 3) for i in range(120)]  # three per millisecond
    store.add_many(existing)
    seen: list[str] = []
    cursor = None
    arrivals = 0
    while True:
        page = store.list(limit=25, cursor=cursor)
        seen += [r.id for r in page.records]
        for _ in range(5):
            arrivals += 1
            store.add(make_record(dead_at=NOW + arrivals))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == sorted((r.id for r in existing), reverse=True)
    assert store.stats()["total"] == 120 + arrivals


def test_pages_of_a_filtered_listing_do_not_overlap(store: DeadLetters) -> None:
    store.add_many(
        make_record(dead_at=NOW + i, category=("auth", "timeout")[i % 2]) for i in range(30)
    )
    first = store.list(category="auth", limit=10)
    second = store.list(category="auth", limit=10, cursor=first.next_cursor)

    assert len(first.records) == 10 and len(second.records) == 5
    assert second.next_cursor is None
    assert {r.category for r in first.records + second.records} == {"auth"}
    assert not {r.id for r in first.records} & {r.id for r in second.records}


def test_a_malformed_cursor_or_page_size_is_refused_with_a_reason(store: DeadLetters) -> None:
    with pytest.raises(ValueError, match="invalid dead-letter cursor"):
        store.list(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        store.list(limit=0)
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        store.list(limit=1001)


# Retention


def test_records_beyond_the_maximum_count_are_evicted_oldest_first_and_counted(
    redis_client: redis.Redis,
) -> None:
    store = DeadLetters(redis_client, max_records=10)
    records = [make_record(dead_at=NOW + i) for i in range(15)]
    for record in records:
        store.add(record)

    stats = store.stats()
    assert stats["total"] == 10
    assert stats["overflow"] == 5
    assert stats["by_category"] == {"model_capability": 10}
    assert [r.id for r in store.list().records] == [r.id for r in reversed(records[5:])]
    assert store.get(records[0].id) is None


def test_one_write_evicts_a_bounded_number_of_records(redis_client: redis.Redis) -> None:
    DeadLetters(redis_client).add_many(make_record(dead_at=NOW + i) for i in range(30))
    store = DeadLetters(redis_client, max_records=10, max_evictions_per_write=5)

    store.add(make_record(dead_at=NOW + 100))
    assert store.stats()["total"] == 26
    for i in range(5):
        store.add(make_record(dead_at=NOW + 101 + i))
    stats = store.stats()
    assert (stats["total"], stats["overflow"]) == (10, 5 + 5 + 5 + 5 + 5 + 1)


def test_records_older_than_the_maximum_age_are_evicted_and_counted(
    redis_client: redis.Redis,
) -> None:
    store = DeadLetters(redis_client, max_age_s=3600)
    old = [make_record(dead_at=NOW - 7_200_000 + i) for i in range(3)]
    recent = make_record(dead_at=NOW - 1_800_000)
    for record in [*old, recent]:
        store.add(record)

    store.add(make_record(dead_at=NOW))

    stats = store.stats()
    assert stats["total"] == 2
    assert stats["expired"] == 3
    assert stats["overflow"] == 0
    assert all(store.get(r.id) is None for r in old)
    assert store.get(recent.id) is not None


def test_trim_applies_age_retention_without_a_new_record(redis_client: redis.Redis) -> None:
    store = DeadLetters(redis_client, max_age_s=60)
    store.add_many(make_record(dead_at=NOW + i) for i in range(4))

    assert store.trim(now_ms=NOW + 60_003) == 3
    assert store.stats()["total"] == 1
    assert store.stats()["expired"] == 3


# Redrive


def test_redrive_enqueues_a_message_dramatiq_decodes_and_clears_the_record(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    message = make_message(
        time_limit=60_000, eta=NOW, evalq_attempt=3, evalq_first_failure_at=NOW, evalq_redriven=1
    )
    record = make_record(message=message)
    store.add(record)
    redis_client.set(keys.attempt_counter_key(record.job_id), 3)

    [outcome] = store.redrive([record.id], now_ms=NOW + 5)

    assert (outcome.id, outcome.job_id, outcome.queue, outcome.redriven) == (
        record.id,
        record.job_id,
        BATCH,
        True,
    )
    [redis_message_id] = redis_client.lrange(keys.queue_key(BATCH), 0, -1)
    data = redis_client.hget(keys.queue_messages_key(BATCH), redis_message_id)
    assert data is not None
    requeued = dramatiq.Message.decode(data)
    assert requeued.message_id == message.message_id
    assert requeued.actor_name == message.actor_name
    assert requeued.queue_name == BATCH
    assert requeued.args == message.args
    assert requeued.kwargs == message.kwargs
    assert requeued.options == {
        "time_limit": 60_000,
        "evalq_redriven": 2,
        "evalq_attempt_base": 3,
        "redis_message_id": redis_message_id.decode(),
    }
    assert requeued.message_timestamp == NOW + 5
    assert store.get(record.id) is None
    assert store.list().records == []
    assert store.stats()["total"] == 0 and store.stats()["by_category"] == {}
    # The counter goes on (the timeline keeps numbering); budgets count from the base.
    assert redis_client.get(keys.attempt_counter_key(record.job_id)) == b"3"
    state = job_state(redis_client, record.job_id)
    assert state["state"] == "queued"
    assert "dead_letter_id" not in state


def test_a_redriven_message_is_fetched_by_a_real_dramatiq_consumer(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    record = make_record()
    store.add(record)
    store.redrive([record.id], now_ms=NOW)

    broker = RedisBroker(client=redis_client, middleware=[])
    consumer = broker.consume(BATCH, prefetch=1, timeout=100)
    delivery = fetch_one(consumer)
    assert delivery.message_id == record.job_id
    assert delivery.options["evalq_redriven"] == 1
    consumer.ack(delivery)
    assert redis_client.hlen(keys.queue_messages_key(BATCH)) == 0


def test_redrive_can_send_a_job_to_another_queue(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    record = make_record(queue=BATCH)
    store.add(record)

    [outcome] = store.redrive([record.id], to_queue=LIVE, now_ms=NOW)

    assert outcome.redriven and outcome.queue == LIVE
    assert redis_client.llen(keys.queue_key(BATCH)) == 0
    [redis_message_id] = redis_client.lrange(keys.queue_key(LIVE), 0, -1)
    data = redis_client.hget(keys.queue_messages_key(LIVE), redis_message_id)
    assert data is not None
    assert dramatiq.Message.decode(data).queue_name == LIVE
    assert job_state(redis_client, record.job_id)["queue"] == LIVE


def test_a_dry_run_redrive_reports_and_changes_nothing(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    records = [make_record(dead_at=NOW + i) for i in range(3)]
    store.add_many(records)
    before = snapshot(redis_client)

    outcomes = store.redrive(category="model_capability", to_queue=LIVE, dry_run=True, now_ms=NOW)

    assert [(o.id, o.queue, o.redriven, o.reason) for o in outcomes] == [
        (r.id, LIVE, False, "dry run") for r in reversed(records)
    ]
    assert snapshot(redis_client) == before


def test_redriving_a_missing_id_reports_no_such_record(store: DeadLetters) -> None:
    missing = f"{NOW:015d}-0123456789"
    outcomes = store.redrive([missing, "garbage"], now_ms=NOW)

    assert [(o.id, o.redriven, o.reason) for o in outcomes] == [
        (missing, False, "no such record"),
        ("garbage", False, "no such record"),
    ]


def test_redrive_by_filter_takes_only_the_matching_records(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    matching = [make_record(dead_at=NOW + i, category="timeout") for i in range(250)]
    others = [
        make_record(category="auth"),
        make_record(queue=LIVE, category="timeout"),
    ]
    store.add_many([*matching, *others])

    outcomes = store.redrive(queue=BATCH, category="timeout", now_ms=NOW)

    assert sorted(o.id for o in outcomes if o.redriven) == sorted(r.id for r in matching)
    assert redis_client.llen(keys.queue_key(BATCH)) == 250
    assert {r.id for r in store.list().records} == {r.id for r in others}


def test_a_record_whose_payload_lost_secrets_to_redaction_is_not_redriven(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    message = make_message().copy(kwargs={"api_key": "abc123"})
    record = make_record(message=message)
    store.add(record)

    [outcome] = store.redrive([record.id], now_ms=NOW)

    assert not outcome.redriven
    assert outcome.reason is not None and "redacted" in outcome.reason
    assert store.get(record.id) is not None
    assert redis_client.llen(keys.queue_key(BATCH)) == 0


# Purge and stats


def test_purge_by_filter_removes_only_matching_records(store: DeadLetters) -> None:
    store.add_many(make_record(dead_at=NOW + i, category="auth") for i in range(700))
    kept = make_record(category="timeout")
    store.add(kept)

    assert store.purge(category="auth", dry_run=True) == 700
    assert store.stats()["total"] == 701
    assert store.purge(category="auth") == 700
    assert [r.id for r in store.list().records] == [kept.id]
    assert store.stats()["by_category"] == {"timeout": 1}


def test_purge_by_ids_respects_the_filters(store: DeadLetters) -> None:
    auth, timeout = make_record(category="auth"), make_record(category="timeout")
    store.add_many([auth, timeout])
    ids = [auth.id, timeout.id, "garbage"]

    assert store.purge(ids, category="auth", dry_run=True) == 1
    assert store.purge(ids, category="auth") == 1
    assert store.get(auth.id) is None
    assert store.get(timeout.id) is not None


def test_purging_everything_leaves_only_the_retention_counters(
    store: DeadLetters, redis_client: redis.Redis
) -> None:
    for queue in (BATCH, LIVE):
        for category in ("auth", "timeout"):
            store.add(make_record(queue=queue, category=category))

    assert store.purge() == 4

    leftover = {k.decode() for k in redis_client.keys(f"{keys.DLQ_PREFIX}*")}
    assert leftover <= {keys.DLQ_COUNTERS}
    assert store.stats() == {
        "total": 0,
        "by_category": {},
        "by_queue": {},
        "overflow": 0,
        "expired": 0,
    }


def test_stats_count_records_by_category_and_queue(store: DeadLetters) -> None:
    store.add_many(
        [
            make_record(queue=BATCH, category="auth"),
            make_record(queue=BATCH, category="timeout"),
            make_record(queue=LIVE, category="timeout"),
        ]
    )

    assert store.stats() == {
        "total": 3,
        "by_category": {"auth": 1, "timeout": 2},
        "by_queue": {BATCH: 2, LIVE: 1},
        "overflow": 0,
        "expired": 0,
    }
