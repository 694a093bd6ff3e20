"""Abort, without Redis: which threads get interrupted, and what the operator is told."""

from __future__ import annotations

import threading
import time

import pytest

from config.policy import load_policy
from middleware.abort import JobInterrupted, RunningJobs
from middleware.core.classify import classify
from middleware.core.errors import JobAborted
from middleware.state.aborts import AbortOutcome
from tests.support.policy import SHIPPED_POLICY


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, type[BaseException]]] = []

    def __call__(self, thread_id: int, exception: type[BaseException]) -> None:
        self.calls.append((thread_id, exception))


def test_the_thread_running_an_aborted_job_is_interrupted_once() -> None:
    running, recorder = RunningJobs(), Recorder()
    running.started(101, "job-a")
    running.started(102, "job-b")
    assert running.interrupt("job-a", recorder) == [101]
    assert running.interrupt("job-a", recorder) == []
    assert recorder.calls == [(101, JobInterrupted)]
    assert running.not_interrupted() == ["job-b"]


def test_a_job_that_is_not_running_here_interrupts_nothing() -> None:
    running, recorder = RunningJobs(), Recorder()
    running.started(101, "job-a")
    running.finished(101)
    assert running.interrupt("job-a", recorder) == []
    assert running.interrupt("job-z", recorder) == []
    assert recorder.calls == []
    assert running.not_interrupted() == []


def test_every_thread_running_a_duplicate_delivery_of_the_job_is_interrupted() -> None:
    running, recorder = RunningJobs(), Recorder()
    running.started(101, "job-a")
    running.started(102, "job-a")
    assert sorted(running.interrupt("job-a", recorder)) == [101, 102]


def test_a_thread_starting_its_next_job_can_be_interrupted_again() -> None:
    running, recorder = RunningJobs(), Recorder()
    running.started(101, "job-a")
    running.interrupt("job-a", recorder)
    running.finished(101)
    running.started(101, "job-a")  # redelivered after a crash, say
    assert running.interrupt("job-a", recorder) == [101]


def test_the_interruption_is_a_class_that_builds_its_own_message() -> None:
    # PyThreadState_SetAsyncExc raises a class: it must be constructible without arguments.
    error = JobInterrupted()
    assert isinstance(error, JobAborted)
    assert str(error) == "aborted by an operator while it ran"


def test_an_interruption_anywhere_in_the_chain_is_aborted_and_dead_lettered() -> None:
    policy = load_policy(SHIPPED_POLICY)
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise JobInterrupted from None
    except JobInterrupted as interrupted:
        wrapper = ConnectionError("the request failed")
        wrapper.__cause__ = interrupted
    result = classify(wrapper, policy, now=0.0)
    assert (result.category, result.rule, result.forced_action) == (
        "aborted",
        "explicit",
        "dead_letter",
    )


def test_a_real_thread_is_interrupted_when_it_next_runs_python() -> None:
    from dramatiq.middleware.threading import raise_thread_exception

    running = RunningJobs()
    caught: list[BaseException] = []
    started = threading.Event()

    def work() -> None:
        running.started(threading.get_ident(), "job-a")
        started.set()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except JobInterrupted as error:
            caught.append(error)
        finally:
            running.finished(threading.get_ident())

    thread = threading.Thread(target=work)
    thread.start()
    started.wait(5)
    running.interrupt("job-a", raise_thread_exception)
    thread.join(2)
    assert not thread.is_alive()
    assert [type(e) for e in caught] == [JobInterrupted]


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (
            AbortOutcome("j1", "unknown", None),
            "no job j1 (unknown, or its record has expired): nothing to abort",
        ),
        (AbortOutcome("j1", "finished", "succeeded"), "job j1 already succeeded: nothing to abort"),
        (
            AbortOutcome("j1", "finished", "dead_lettered"),
            "job j1 already dead-lettered: nothing to abort",
        ),
        (
            AbortOutcome("j1", "requested", "queued"),
            "job j1 was queued: it will not run (the worker that picks it up dead-letters it as "
            "aborted)",
        ),
        (
            AbortOutcome("j1", "requested", "retrying"),
            "job j1 was waiting to retry: it will not run again (the worker that picks it up "
            "dead-letters it as aborted)",
        ),
        (
            AbortOutcome("j1", "requested", "running", 2, "evaluations.batch", "run_batch"),
            "abort requested: job j1 was running (run_batch on evaluations.batch; 2 worker "
            "process(es) told); it stops when its thread next runs Python, at the latest when a "
            "provider request in flight times out",
        ),
    ],
)
def test_the_operator_is_told_what_the_abort_did(outcome: AbortOutcome, message: str) -> None:
    assert outcome.message == message
    assert outcome.as_dict() == {
        "job_id": "j1",
        "state_before": outcome.state_before,
        "aborted": outcome.result == "requested",
        "message": message,
    }
