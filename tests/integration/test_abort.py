"""Abort and cancel, with real worker processes: a queued or delayed job never runs, a running
one is interrupted in its worker thread, and every aborted job ends in the DLQ as ``aborted``,
never retried. Provider requests are counted at the provider, actor runs in Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, rule_request, target_of
from tests.support.slow_actors import RUNS_KEY, busy
from workers import client
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration

SLOW_MODULES = ("workers", "tests.support.slow_actors")


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as simulated:
        yield simulated


def llm_env(provider: SimulatedProvider) -> dict[str, str]:
    """A pool whose provider requests give up after 1 s, so a blocked thread is back in Python
    within a second."""
    return {
        "EVALQ_PROVIDER_BASE_URL": provider.base_url,
        "EVALQ_PROVIDER_API_KEY": "sk-test-key",
        "EVALQ_PROVIDER_TIMEOUT_S": "1",
    }


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s"
        time.sleep(0.01)


def dead_letter_of(redis_client: redis.Redis, job_id: str) -> Any:
    records = [r for r in DeadLetters(redis_client).list(limit=100).records if r.job_id == job_id]
    assert len(records) <= 1
    return records[0] if records else None


def runs(redis_client: redis.Redis, tag: str) -> int:
    return int(redis_client.hget(RUNS_KEY, tag) or 0)  # type: ignore[arg-type]


def start_busy_job(worker_pools: WorkerPools, redis_client: redis.Redis) -> tuple[str, str]:
    """A pool on ``default`` and a pure-Python job running in it for 30 s: (job id, tag)."""
    worker_pools.start("default", threads=1, modules=SLOW_MODULES)
    tag = str(uuid.uuid4())
    job_id = busy.send(30, tag).message_id
    wait_until(lambda: runs(redis_client, tag) == 1, timeout=20, what="the job started")
    assert client.JobHandle(job_id).state() == "running"
    return job_id, tag


# --- running jobs -----------------------------------------------------------------------------


def test_aborting_a_running_llm_job_stops_it_within_two_seconds_and_it_is_never_retried(
    worker_pools: WorkerPools, redis_client: redis.Redis, provider: SimulatedProvider
) -> None:
    request = llm_request()
    target = target_of(request)
    provider.script(target, [Reply.hang(30)])
    worker_pools.start("evaluations.batch", threads=1, env=llm_env(provider))
    handle = client.submit_evaluation(request)
    wait_until(lambda: provider.count(target) == 1, timeout=20, what="the request was sent")
    time.sleep(0.2)  # the worker thread is now blocked reading the provider's answer
    assert handle.state() == "running"

    started = time.monotonic()
    outcome = client.abort(handle.id)
    wait_until(lambda: handle.state() == "aborted", timeout=10, what="the job was aborted")
    latency = time.monotonic() - started
    print(f"abort latency, LLM request blocked in a socket read: {latency:.3f}s")

    assert (outcome.requested, outcome.state_before) == (True, "running")
    assert latency < 2.0, latency
    # The shipped policy would retry a timeout after ~2 s: wait past that.
    time.sleep(4)
    assert provider.count(target) == 1
    record = dead_letter_of(redis_client, handle.id)
    assert (record.category, record.rule) == ("aborted", "explicit")
    assert record.error_type == "middleware.abort.JobInterrupted"
    assert [(a["n"], a["outcome"]) for a in record.attempts] == [(1, "aborted")]
    assert handle.state() == "aborted"


def test_aborting_a_running_pure_python_job_interrupts_it_within_two_seconds(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    job_id, tag = start_busy_job(worker_pools, redis_client)
    handle = client.JobHandle(job_id)

    started = time.monotonic()
    outcome = client.abort(job_id)
    wait_until(lambda: handle.state() == "aborted", timeout=10, what="the job was aborted")
    latency = time.monotonic() - started
    print(f"abort latency, pure-Python job: {latency:.3f}s")

    assert (outcome.requested, outcome.state_before, outcome.notified) == (True, "running", 1)
    assert latency < 2.0, latency
    time.sleep(2)
    assert runs(redis_client, tag) == 1
    record = dead_letter_of(redis_client, job_id)
    assert record.category == "aborted"
    assert record.error_type == "middleware.abort.JobInterrupted"
    assert [(a["n"], a["outcome"]) for a in record.attempts] == [(1, "aborted")]


def test_a_running_job_whose_abort_message_was_lost_is_stopped_by_the_abort_key_check(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    job_id, tag = start_busy_job(worker_pools, redis_client)
    handle = client.JobHandle(job_id)
    # What `request_abort` leaves behind when its published message reaches no one.
    redis_client.set(keys.abort_key(job_id), 1, ex=60)
    started = time.monotonic()
    wait_until(lambda: handle.state() == "aborted", timeout=10, what="the job was aborted")
    latency = time.monotonic() - started
    print(f"abort latency, found by the abort key check: {latency:.3f}s")
    assert latency < 2.0, latency
    assert dead_letter_of(redis_client, job_id).category == "aborted"
    assert runs(redis_client, tag) == 1


def test_the_worker_hears_aborts_again_after_its_subscription_is_cut(
    worker_pools: WorkerPools, redis_client: redis.Redis
) -> None:
    job_id, tag = start_busy_job(worker_pools, redis_client)
    killed = redis_client.client_kill_filter(_type="pubsub")
    assert killed >= 1
    time.sleep(0.5)
    started = time.monotonic()
    assert client.abort(job_id).requested
    wait_until(lambda: client.JobHandle(job_id).state() == "aborted", timeout=10,
               what="the job was aborted")  # fmt: skip
    assert time.monotonic() - started < 2.0
    assert runs(redis_client, tag) == 1
    # The pool is still alive and working.
    assert all(code is None for code in worker_pools.group.poll().values())
    assert client.submit_evaluation(rule_request(), lane="live").id


# --- jobs that have not started ---------------------------------------------------------------


def test_an_aborted_queued_job_never_runs_and_ends_aborted_once_a_worker_picks_it_up(
    worker_pools: WorkerPools, redis_client: redis.Redis, provider: SimulatedProvider
) -> None:
    request = llm_request()
    handle = client.submit_evaluation(request)  # no pool consumes evaluations.batch yet
    assert handle.state() == "queued"

    outcome = client.abort(handle.id)
    assert (outcome.requested, outcome.state_before) == (True, "queued")
    assert "it will not run" in outcome.message
    assert handle.state() == "aborted"  # at once, before any worker saw it

    worker_pools.start("evaluations.batch", threads=1, env=llm_env(provider))
    wait_until(lambda: dead_letter_of(redis_client, handle.id) is not None, timeout=20,
               what="the job was dead-lettered")  # fmt: skip
    record = dead_letter_of(redis_client, handle.id)
    assert record.category == "aborted"
    assert record.attempts == []
    assert "aborted by an operator before it ran" in (record.reason or "")
    assert provider.count(target_of(request)) == 0
    assert handle.state() == "aborted"
    assert redis_client.llen(keys.queue_key("evaluations.batch")) == 0


def test_an_aborted_job_waiting_to_retry_never_runs_again(
    worker_pools: WorkerPools, redis_client: redis.Redis, provider: SimulatedProvider
) -> None:
    request = llm_request()
    target = target_of(request)
    provider.script(target, [Reply.rate_limited(retry_after_s=3), Reply.ok()])
    worker_pools.start("evaluations.batch", threads=1, env=llm_env(provider))
    handle = client.submit_evaluation(request)
    wait_until(lambda: handle.state() == "retrying", timeout=20, what="the job waits to retry")

    outcome = client.abort(handle.id)
    assert (outcome.requested, outcome.state_before) == (True, "retrying")
    assert "will not run again" in outcome.message
    assert handle.state() == "aborted"

    # The delayed message comes due after 3 s; the worker then dead-letters it without running.
    wait_until(lambda: dead_letter_of(redis_client, handle.id) is not None, timeout=20,
               what="the job was dead-lettered")  # fmt: skip
    time.sleep(1)
    assert provider.count(target) == 1
    record = dead_letter_of(redis_client, handle.id)
    assert record.category == "aborted"
    assert [(a["n"], a["outcome"], a["category"]) for a in record.attempts] == [
        (1, "retried", "rate_limited")
    ]
    assert handle.state() == "aborted"


# --- finished and unknown jobs ----------------------------------------------------------------


def test_aborting_a_finished_job_says_so_exits_1_and_changes_nothing(
    worker_pools: WorkerPools, redis_client: redis.Redis, redis_url: str
) -> None:
    worker_pools.start("evaluations.live")
    handle = client.submit_evaluation(rule_request(), lane="live")
    handle.result(timeout=20)
    before = History(redis_client).show(handle.id)

    completed = run_evalq("abort", handle.id, redis_url=redis_url)

    assert completed.returncode == 1, completed.stderr
    assert f"job {handle.id} already succeeded: nothing to abort" in completed.stdout
    assert History(redis_client).show(handle.id) == before
    assert redis_client.exists(keys.abort_key(handle.id)) == 0
    assert DeadLetters(redis_client).list().records == []


def test_aborting_a_dead_lettered_job_leaves_its_record_as_it_is(
    worker_pools: WorkerPools, redis_client: redis.Redis, provider: SimulatedProvider
) -> None:
    request = llm_request()
    provider.script(target_of(request), [Reply.tools_not_supported()])
    worker_pools.start("evaluations.batch", threads=1, env=llm_env(provider))
    handle = client.submit_evaluation(request)
    assert client.wait_all([handle.id], timeout=20)[handle.id] == "dead_lettered"
    record = dead_letter_of(redis_client, handle.id)
    state = redis_client.hgetall(keys.job_key(handle.id))

    outcome = client.abort(handle.id)

    assert (outcome.requested, outcome.result, outcome.state_before) == (
        False, "finished", "dead_lettered",
    )  # fmt: skip
    assert outcome.message == f"job {handle.id} already dead-lettered: nothing to abort"
    assert dead_letter_of(redis_client, handle.id) == record
    assert redis_client.hgetall(keys.job_key(handle.id)) == state
    assert redis_client.exists(keys.abort_key(handle.id)) == 0


def test_aborting_an_unknown_job_says_so_and_exits_4(redis_url: str) -> None:
    completed = run_evalq("abort", "no-such-job", "--json", redis_url=redis_url)
    assert completed.returncode == 4, completed.stderr
    assert json.loads(completed.stdout) == {
        "job_id": "no-such-job",
        "state_before": None,
        "aborted": False,
        "message": "no job no-such-job (unknown, or its record has expired): nothing to abort",
    }


# --- the command line and redrive ---------------------------------------------------------


def test_evalq_abort_json_reports_the_state_it_found_and_exits_0(
    redis_url: str, redis_client: redis.Redis
) -> None:
    handle = client.submit_evaluation(llm_request())  # queued: no pool is running
    completed = run_evalq("abort", handle.id, "--json", redis_url=redis_url)
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert {k: document[k] for k in ("job_id", "state_before", "aborted")} == {
        "job_id": handle.id,
        "state_before": "queued",
        "aborted": True,
    }
    assert "it will not run" in document["message"]
    assert sorted(document) == ["aborted", "job_id", "message", "state_before"]

    again = run_evalq("abort", handle.id, "--json", redis_url=redis_url)
    assert again.returncode == 1
    assert json.loads(again.stdout)["state_before"] == "aborted"


def test_evalq_abort_of_a_running_job_says_where_it_runs(
    worker_pools: WorkerPools, redis_client: redis.Redis, redis_url: str
) -> None:
    job_id, _ = start_busy_job(worker_pools, redis_client)
    completed = run_evalq("abort", job_id, redis_url=redis_url)
    assert completed.returncode == 0, completed.stderr
    assert f"abort requested: job {job_id} was running (busy on default;" in completed.stdout
    assert "it stops when its thread next runs Python" in completed.stdout
    wait_until(lambda: client.JobHandle(job_id).state() == "aborted", timeout=10,
               what="the job was aborted")  # fmt: skip


def test_an_aborted_job_can_be_redriven_and_then_runs(
    worker_pools: WorkerPools,
    redis_client: redis.Redis,
    redis_url: str,
    provider: SimulatedProvider,
) -> None:
    request = llm_request()
    target = target_of(request)
    provider.script(target, [Reply.hang(30), Reply.ok(passed=True)])
    worker_pools.start("evaluations.batch", threads=1, env=llm_env(provider))
    handle = client.submit_evaluation(request)
    wait_until(lambda: provider.count(target) == 1, timeout=20, what="the request was sent")
    assert client.abort(handle.id).requested
    wait_until(lambda: dead_letter_of(redis_client, handle.id) is not None, timeout=10,
               what="the job was dead-lettered")  # fmt: skip
    record = dead_letter_of(redis_client, handle.id)

    completed = run_evalq("dlq", "redrive", record.id, redis_url=redis_url)

    assert completed.returncode == 0, completed.stderr
    assert handle.result(timeout=20).has_passed is True
    assert provider.count(target) == 2
    assert redis_client.exists(keys.abort_key(handle.id)) == 0
    timeline = History(redis_client).show(handle.id)
    assert timeline is not None
    assert [(a["n"], a["outcome"]) for a in timeline["attempts"]] == [
        (1, "aborted"),
        (2, "succeeded"),
    ]
