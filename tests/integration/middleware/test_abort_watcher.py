"""Abort requests and the abort watcher, in process, against a real Redis."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from middleware.abort import AbortWatcher, JobInterrupted
from middleware.state import keys
from middleware.state.aborts import request_abort

pytestmark = pytest.mark.integration

TTL_S = 600


def set_state(client: redis.Redis, job_id: str, state: str | None) -> None:
    fields = {"queue": "evaluations.batch", "actor": "run_batch_evaluation"}
    if state is not None:
        fields["state"] = state
    client.hset(keys.job_key(job_id), mapping=fields)


def job_state(client: redis.Redis, job_id: str) -> str | None:
    state = client.hget(keys.job_key(job_id), "state")
    return state.decode() if isinstance(state, bytes) else None


# --- request_abort ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["queued", "retrying"])
def test_a_job_that_has_not_started_is_marked_aborted_at_once(
    redis_client: redis.Redis, state: str
) -> None:
    set_state(redis_client, "j1", state)
    outcome = request_abort(redis_client, "j1", ttl_s=TTL_S)
    assert (outcome.result, outcome.state_before) == ("requested", state)
    assert job_state(redis_client, "j1") == "aborted"
    assert 0 < redis_client.ttl(keys.abort_key("j1")) <= TTL_S


def test_a_running_job_stays_running_until_it_stops_and_its_workers_are_told(
    redis_client: redis.Redis,
) -> None:
    set_state(redis_client, "j1", "running")
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.ABORT_CHANNEL)
    try:
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        outcome = request_abort(redis_client, "j1", ttl_s=TTL_S)
        message = pubsub.get_message(timeout=2)
    finally:
        pubsub.close()
    assert (outcome.result, outcome.state_before, outcome.notified) == ("requested", "running", 1)
    assert (outcome.queue, outcome.actor) == ("evaluations.batch", "run_batch_evaluation")
    assert job_state(redis_client, "j1") == "running"
    assert redis_client.exists(keys.abort_key("j1")) == 1
    assert message is not None and message["data"] == b"j1"


@pytest.mark.parametrize("state", ["succeeded", "dead_lettered", "aborted", "dropped"])
def test_a_finished_job_is_left_exactly_as_it_was(redis_client: redis.Redis, state: str) -> None:
    set_state(redis_client, "j1", state)
    before = {key: redis_client.dump(key) for key in redis_client.keys("*")}
    outcome = request_abort(redis_client, "j1", ttl_s=TTL_S)
    assert (outcome.result, outcome.state_before, outcome.requested) == ("finished", state, False)
    assert {key: redis_client.dump(key) for key in redis_client.keys("*")} == before


def test_an_unknown_job_changes_nothing(redis_client: redis.Redis) -> None:
    outcome = request_abort(redis_client, "nope", ttl_s=TTL_S)
    assert (outcome.result, outcome.state_before, outcome.requested) == ("unknown", None, False)
    assert redis_client.keys("*") == []


def test_a_job_still_being_enqueued_counts_as_queued(redis_client: redis.Redis) -> None:
    set_state(redis_client, "j1", None)  # the submitter claimed it; no state written yet
    outcome = request_abort(redis_client, "j1", ttl_s=TTL_S)
    assert (outcome.result, outcome.state_before) == ("requested", "queued")
    assert redis_client.exists(keys.abort_key("j1")) == 1


# --- the watcher ------------------------------------------------------------------------------


class Job:
    """A worker thread running one job in pure Python, as the watcher sees it."""

    def __init__(self, watcher: AbortWatcher, job_id: str) -> None:
        self.watcher = watcher
        self.job_id = job_id
        self.caught: list[BaseException] = []
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(5)

    def _run(self) -> None:
        self.watcher.running.started(threading.get_ident(), self.job_id)
        self.started.set()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except JobInterrupted as error:
            self.caught.append(error)
        finally:
            self.watcher.running.finished(threading.get_ident())

    def stopped_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return not self.thread.is_alive()


@pytest.fixture
def watcher(redis_client: redis.Redis) -> Iterator[AbortWatcher]:
    watching = AbortWatcher(redis_client, poll_interval_s=0.5)
    watching.start()
    time.sleep(0.2)  # subscribed
    yield watching
    watching.stop()


def test_the_watcher_interrupts_the_thread_of_an_aborted_job(
    watcher: AbortWatcher, redis_client: redis.Redis
) -> None:
    set_state(redis_client, "j1", "running")
    set_state(redis_client, "j2", "running")
    job, other = Job(watcher, "j1"), Job(watcher, "j2")
    started = time.monotonic()
    request_abort(redis_client, "j1", ttl_s=TTL_S)
    assert job.stopped_within(2)
    assert time.monotonic() - started < 0.5  # heard, not polled
    assert [type(e) for e in job.caught] == [JobInterrupted]
    assert other.thread.is_alive()
    request_abort(redis_client, "j2", ttl_s=TTL_S)
    assert other.stopped_within(2)


def test_the_watcher_finds_an_abort_it_did_not_hear(
    watcher: AbortWatcher, redis_client: redis.Redis
) -> None:
    job = Job(watcher, "j1")
    redis_client.set(keys.abort_key("j1"), 1)
    assert job.stopped_within(2)


def test_the_watcher_keeps_listening_after_its_connection_is_cut(
    watcher: AbortWatcher, redis_client: redis.Redis
) -> None:
    assert redis_client.client_kill_filter(_type="pubsub") >= 1
    time.sleep(0.3)
    set_state(redis_client, "j1", "running")
    job = Job(watcher, "j1")
    request_abort(redis_client, "j1", ttl_s=TTL_S)
    assert job.stopped_within(2)
    assert watcher._thread is not None and watcher._thread.is_alive()


def test_the_watcher_survives_an_unreachable_redis_and_stops_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    watching = AbortWatcher(client, poll_interval_s=0.1)

    def lost() -> int:
        return sum("Abort watcher lost Redis" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="evalq.abort"):
        watching.start()
        deadline = time.monotonic() + 5
        while not lost():
            assert time.monotonic() < deadline, "no warning"
            time.sleep(0.05)
        time.sleep(1.5)  # several more failed attempts

        assert watching._thread is not None and watching._thread.is_alive()
        started = time.monotonic()
        watching.stop()
    assert time.monotonic() - started < 1
    assert lost() == 1  # said once per outage, not once per attempt
