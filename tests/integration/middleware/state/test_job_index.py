"""The job index: every transition moves a job between indexes in the step that writes its state,
and a page of jobs is found by queue, actor, state, category and time, newest first."""

from __future__ import annotations

import time
import uuid
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy

from middleware.state import keys
from middleware.state.aborts import request_abort
from middleware.state.dead_letters import DeadLetters
from middleware.state.job_index import trim_job_index
from middleware.state.job_states import (
    ABORTED,
    DEAD_LETTERED,
    DROPPED,
    QUEUED,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    attempt_record,
)
from middleware.state.jobs import History, search_jobs
from middleware.state.scripts import scripts_for
from middleware.state.settlement import delayed_retry, retry_call
from tests.support.dead_letters import BATCH, LIVE, make_record
from workers.deduplication import Dedup, Submission

pytestmark = pytest.mark.integration

BROKER_ID = "3f0c3c8e-0000-4000-8000-000000000003"
ACTOR = "run_batch_evaluation"


def submit(client: redis.Redis, *, queue: str = BATCH, actor: str = ACTOR, now: int) -> str:
    """Submit one job as ``workers.client`` does (the submit script); returns its id."""
    message = dramatiq.Message(
        queue_name=queue, actor_name=actor, args=(), kwargs={},
        options={"redis_message_id": str(uuid.uuid4())}, message_timestamp=now,
    )  # fmt: skip
    submission = Submission(
        key=str(uuid.uuid4()), job_id=message.message_id, queue=queue, actor=actor,
        redis_message_id=message.options["redis_message_id"], data=message.encode(),
        evaluation_uuid="e", target_uuid="t",
    )  # fmt: skip
    call_keys, args = submission.script_call(Dedup(), now_ms=now, job_ttl_s=3600)
    scripts_for(client).submit(keys=call_keys, args=args)
    return message.message_id


def fetched(client: redis.Redis, job_id: str, queue: str = BATCH) -> MessageProxy:
    """The job's delivery as a worker holds it (in its acks set)."""
    raw = client.hgetall(keys.queue_messages_key(queue))
    for redis_message_id, data in raw.items():
        message = dramatiq.Message.decode(data)
        if message.message_id == job_id:
            client.sadd(keys.acks_key(BROKER_ID, queue), redis_message_id)
            return MessageProxy(message)
    raise AssertionError(f"job {job_id} is not on {queue}")


def found(client: redis.Redis, **filters: Any) -> list[str]:
    jobs, _ = search_jobs(client, limit=1000, **filters)
    return [job["job_id"] for job in jobs]


@pytest.fixture
def history(redis_client: redis.Redis) -> History:
    return History(redis_client, ttl_s=3600)


def test_a_submitted_job_is_found_by_its_queue_actor_and_state(redis_client: redis.Redis) -> None:
    job = submit(redis_client, now=1_000)
    other = submit(redis_client, queue=LIVE, actor="run_live_evaluation", now=2_000)

    assert found(redis_client) == [other, job]
    assert found(redis_client, queue=BATCH) == [job]
    assert found(redis_client, actor="run_live_evaluation") == [other]
    assert found(redis_client, state=QUEUED) == [other, job]
    assert found(redis_client, queue=LIVE, state=QUEUED) == [other]
    assert found(redis_client, state=RUNNING) == []


def test_the_summary_holds_the_fields_of_evalq_jobs_show(
    redis_client: redis.Redis, history: History
) -> None:
    job = submit(redis_client, now=1_000)
    history.start_attempt(job, queue=BATCH, actor=ACTOR, running_until=10**13)

    (summary,), cursor = search_jobs(redis_client)

    assert cursor is None
    assert summary == {
        "job_id": job, "queue": BATCH, "actor": ACTOR, "state": RUNNING, "category": None,
        "attempts": 1, "enqueued_at": 1_000, "finished_at": None, "error_type": None,
        "error_message": None, "dead_letter_id": None,
    }  # fmt: skip


def test_every_transition_moves_the_job_to_the_index_of_its_new_state(
    redis_client: redis.Redis, history: History
) -> None:
    job = submit(redis_client, now=1_000)
    history.start_attempt(job, queue=BATCH, actor=ACTOR, running_until=10**13)
    assert found(redis_client, state=RUNNING) == [job]
    assert found(redis_client, state=QUEUED) == []

    delivery = fetched(redis_client, job)
    redis_message_id, data = delayed_retry(delivery, eta=5_000, carried={})
    entry = attempt_record(1, started_at=1, finished_at=2, outcome="retried", category="timeout")
    call_keys, args = retry_call(
        delivery, broker_id=BROKER_ID, redis_message_id=redis_message_id, data=data,
        entry=entry, eta=5_000, job_ttl_s=3600,
    )  # fmt: skip
    assert scripts_for(redis_client).retry(keys=call_keys, args=args) == 1
    assert found(redis_client, state=RETRYING) == [job]
    assert found(redis_client, category="timeout") == [job]
    assert found(redis_client, state=RUNNING) == []

    history.start_attempt(job, queue=BATCH, actor=ACTOR, running_until=10**13)
    history.record_state(job, {"state": SUCCEEDED, "finished_at": 9_000})
    history.flush()
    assert found(redis_client, state=SUCCEEDED) == [job]
    assert found(redis_client, queue=BATCH, state=SUCCEEDED) == [job]
    assert found(redis_client, state=RETRYING) == found(redis_client, state=RUNNING) == []


def test_a_dead_letter_and_its_redrive_move_the_job_and_the_redrive_makes_it_new(
    redis_client: redis.Redis,
) -> None:
    store = DeadLetters(redis_client)
    record = make_record()
    job = record.job_id
    # A running job the index does not know yet: the dead letter indexes it, enqueued when
    # its message was.
    redis_client.hset(keys.job_key(job), mapping={"state": RUNNING, "queue": BATCH, "actor": ACTOR})
    store.add(record)
    assert found(redis_client, until_ms=record.payload["message_timestamp"]) == [job]
    assert found(redis_client, state=DEAD_LETTERED, category="model_capability") == [job]
    assert found(redis_client, actor=record.actor) == [job]

    (outcome,) = store.redrive([record.id], now_ms=7_000)

    assert outcome.redriven
    assert found(redis_client, state=QUEUED, queue=BATCH) == [job]
    assert (
        found(redis_client, state=DEAD_LETTERED)
        == found(redis_client, category="model_capability")
        == []
    )
    assert found(redis_client, since_ms=7_000, until_ms=7_000) == [job]


def test_an_abort_and_a_drop_are_indexed(redis_client: redis.Redis, history: History) -> None:
    aborted, dropped = submit(redis_client, now=1_000), submit(redis_client, now=2_000)
    request_abort(redis_client, aborted, ttl_s=3600)
    history.start_attempt(dropped, queue=BATCH, actor=ACTOR, running_until=10**13)
    history.record_state(dropped, {"state": DROPPED, "finished_at": 3_000, "category": "unknown"})
    history.flush()

    assert found(redis_client, state=ABORTED, category="aborted") == [aborted]
    assert found(redis_client, state=DROPPED, category="unknown") == [dropped]
    assert found(redis_client, state=QUEUED) == []


def test_a_job_enqueued_by_the_broker_is_indexed_as_queued(
    redis_client: redis.Redis, history: History
) -> None:
    history.record_enqueued("job-1", queue="default", actor="export_results")
    assert found(redis_client, queue="default", state=QUEUED, actor="export_results") == ["job-1"]


def test_a_job_the_index_missed_is_indexed_by_its_next_transition(
    redis_client: redis.Redis, history: History
) -> None:
    redis_client.hset(keys.job_key("old"), mapping={"state": QUEUED, "queue": BATCH})
    history.start_attempt("old", queue=BATCH, actor=ACTOR, running_until=10**13, enqueued_at=40)
    assert found(redis_client, state=RUNNING, until_ms=40) == ["old"]


def test_pages_walk_every_job_once_newest_first_even_when_many_share_a_millisecond(
    redis_client: redis.Redis,
) -> None:
    jobs = [submit(redis_client, now=1_000 + i // 7) for i in range(60)]
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = search_jobs(redis_client, limit=8, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    assert sorted(job["job_id"] for job in seen) == sorted(jobs)
    assert len(seen) == len(jobs)
    times = [job["enqueued_at"] for job in seen]
    assert times == sorted(times, reverse=True)


def test_the_time_range_includes_its_ends(redis_client: redis.Redis) -> None:
    first, second, third = (submit(redis_client, now=t) for t in (1_000, 2_000, 3_000))
    assert found(redis_client, since_ms=2_000) == [third, second]
    assert found(redis_client, until_ms=2_000) == [second, first]
    assert found(redis_client, since_ms=2_000, until_ms=2_000) == [second]


def test_a_page_whose_filters_few_jobs_match_stops_early_and_its_cursor_goes_on(
    redis_client: redis.Redis,
) -> None:
    rare = submit(redis_client, queue=LIVE, actor="rare", now=1_000)
    for i in range(60):  # both candidate indexes hold 61 jobs, newer ones that do not match
        submit(redis_client, queue=BATCH, actor="rare", now=2_000 + i)
        submit(redis_client, queue=LIVE, actor="common", now=2_000 + i)

    page, cursor = search_jobs(redis_client, actor="rare", queue=LIVE, limit=1)
    assert page == [] and cursor is not None  # 20 entries read, none on the live queue
    matches = []
    while cursor is not None:
        page, cursor = search_jobs(redis_client, actor="rare", queue=LIVE, limit=1, cursor=cursor)
        matches += [job["job_id"] for job in page]
    assert matches == [rare]


def test_a_job_whose_record_expired_is_not_listed(redis_client: redis.Redis) -> None:
    job = submit(redis_client, now=1_000)
    redis_client.delete(keys.job_key(job))
    assert found(redis_client) == found(redis_client, state=QUEUED) == []


def test_the_trim_removes_old_entries_from_every_index_within_its_budget(
    redis_client: redis.Redis, history: History
) -> None:
    now = int(time.time() * 1000)
    old = [submit(redis_client, now=now - 7_200_000 + i) for i in range(5)]
    history.start_attempt(old[0], queue=BATCH, actor=ACTOR, running_until=10**13)
    young = submit(redis_client, queue=LIVE, now=now)

    assert trim_job_index(redis_client, max_age_s=3600, now_ms=now, budget=4) == (4, True)
    removed, unfinished = trim_job_index(redis_client, max_age_s=3600, now_ms=now)

    assert removed > 0 and not unfinished
    index_keys = {k.decode() for k in redis_client.keys(f"{keys.JOB_INDEX_PREFIX}*")}
    members = {m.decode() for k in index_keys if redis_client.type(k) == b"zset"
               for m in redis_client.zrange(k, 0, -1)}  # fmt: skip
    assert members == {young}
    assert keys.job_queue_state_index_key(BATCH, QUEUED) not in index_keys
    assert redis_client.smembers(f"{keys.JOB_INDEX_PREFIX}names:queue") == {LIVE.encode()}


def test_the_flusher_trims_once_per_interval_across_processes(redis_client: redis.Redis) -> None:
    now = int(time.time() * 1000)
    submit(redis_client, now=now - 7_200_000)
    first, second = History(redis_client, ttl_s=3600), History(redis_client, ttl_s=3600)
    second._trim_on_schedule()  # takes the interval's lock and trims
    submit(redis_client, now=now - 7_200_000 + 1)
    first._trim_on_schedule()  # the lock is held: no trim in this interval
    assert redis_client.zcard(keys.JOB_INDEX_ALL) == 1


def test_a_malformed_cursor_or_page_size_is_refused_with_a_reason(
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(ValueError, match="invalid job cursor"):
        search_jobs(redis_client, cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        search_jobs(redis_client, limit=0)


def test_the_index_adds_no_round_trip_to_starting_an_attempt_or_flushing_outcomes(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = submit(redis_client, now=int(time.time() * 1000))  # young: the flusher trims by age
    history = History(redis_client, ttl_s=3600, flush_interval_s=60)
    history.start()  # loads the scripts and buffers outcomes, as in a worker
    # A worker's starts go over a connection it keeps, its flushes over the pool's: each
    # connected (and introduced to Redis) once, before what is counted here.
    warm = submit(redis_client, now=int(time.time() * 1000))
    history.start_attempt(warm, queue=BATCH, actor=ACTOR, running_until=10**13)
    history.record_state(warm, {"state": SUCCEEDED, "finished_at": 2})
    history.flush()
    sent: list[Any] = []
    original = redis.connection.Connection.send_packed_command

    def counting(
        self: redis.connection.Connection, command: Any, check_health: bool = True
    ) -> None:
        sent.append(command)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    try:
        history.start_attempt(job, queue=BATCH, actor=ACTOR, running_until=10**13)
        assert len(sent) == 1
        sent.clear()
        entry = attempt_record(1, started_at=1, finished_at=2, outcome="succeeded")
        history.record_attempt(job, entry)
        history.record_state(job, {"state": SUCCEEDED, "finished_at": 2})
        history.flush()
        assert len(sent) == 1
    finally:
        history.stop()
    assert sorted(found(redis_client, state=SUCCEEDED)) == sorted([job, warm])
