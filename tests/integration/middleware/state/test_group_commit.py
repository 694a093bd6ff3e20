"""Threads that count attempts at the same moment share round trips, and each gets its own
answer: a group of starts is one pipeline, a lone start is sent at once."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.commands.core import Script

from middleware.state import keys
from middleware.state.group_commit import GroupCommit, _Call
from middleware.state.jobs import History, start_call
from middleware.state.scripts import scripts_for
from tests.support.interrupts import interrupting_at
from tests.support.round_trips import RoundTrips

pytestmark = pytest.mark.integration


def _start_many(history: History, job_ids: list[str]) -> list[tuple[str, int, bool]]:
    results: list[tuple[str, int, bool]] = []
    barrier = threading.Barrier(len(job_ids))

    def start(job_id: str) -> None:
        barrier.wait()
        started = history.start_attempt(
            job_id, queue="default", actor="export_results", running_until=2**40
        )
        results.append((job_id, started.n, started.aborted))

    threads = [threading.Thread(target=start, args=(job,)) for job in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_sixteen_threads_starting_at_once_each_get_their_count_in_fewer_round_trips(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    history = History(client)
    history.start_attempt("warm", queue="default", actor="export_results", running_until=2**40)
    jobs = [f"job-{i % 8}" for i in range(16)]  # each job started by two threads
    trips = RoundTrips(client)
    try:
        results = _start_many(history, jobs)
    finally:
        trips.close()
    # Each thread got its own answer: the two starts of a job are its attempts 1 and 2.
    for job_id in set(jobs):
        assert sorted(n for job, n, _ in results if job == job_id) == [1, 2]
        assert int(client.get(keys.attempt_counter_key(job_id))) == 2
        assert client.hget(keys.job_key(job_id), "state") == b"running"
    assert not any(aborted for _, _, aborted in results)
    assert trips.count < 16, trips.count


def test_a_group_sent_after_redis_forgot_its_scripts_still_runs_every_call(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    history = History(client)
    client.script_flush()
    results = _start_many(history, [f"fresh-{i}" for i in range(12)])
    assert sorted(n for _, n, _ in results) == [1] * 12


def test_a_call_that_fails_fails_alone(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    group = GroupCommit(client)
    script = scripts_for(client).start
    errors: list[BaseException] = []
    answers: list[object] = []
    barrier = threading.Barrier(6)

    def call(good: bool) -> None:
        barrier.wait()
        try:
            if good:
                script_keys, args = start_call(
                    "g", ttl_s=60, queue="default", actor="a", running_until=2**40
                )
                answers.append(group(script, keys=script_keys, args=args))
            else:
                answers.append(group(script, keys=["k"], args=[]))  # too few keys and arguments
        except redis.RedisError as error:
            errors.append(error)

    threads = [threading.Thread(target=call, args=(i != 3,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 1 and len(answers) == 5
    assert int(client.get(keys.attempt_counter_key("g"))) == 5


def test_a_sender_interrupted_mid_round_trip_hands_the_sending_on(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    script = scripts_for(client).start
    group = GroupCommit(client)

    class Interrupt(BaseException):
        pass

    original = group._send

    def interrupted(calls, own=None):  # type: ignore[no-untyped-def]
        raise Interrupt  # as a time limit landing in the sender's round trip would

    group._send = interrupted  # type: ignore[method-assign]
    script_keys, args = start_call("i", ttl_s=60, queue="default", actor="a", running_until=2**40)
    # A follower waits in the group the sender took.
    follower = _Call(script, script_keys, args)
    group._pending = [follower]
    with pytest.raises(Interrupt):
        group(script, keys=script_keys, args=args)
    group._send = original  # type: ignore[method-assign]
    # The follower got an error it retries on (its round trip may not have run), not silence.
    assert follower.finished
    assert isinstance(follower.error, redis.ConnectionError)
    # The next caller is not left waiting for a round trip nobody is making.
    done = threading.Event()
    threading.Thread(
        target=lambda: (group(script, keys=script_keys, args=args), done.set())
    ).start()
    assert done.wait(5)


class _LandsInTheSender(BaseException):
    """Raised into the sending thread while its round trip is in flight, as a time limit is."""


class _AbortLandsInTheSender(Exception):
    """The same, an ``Exception`` like ``middleware.abort.JobInterrupted``."""


@pytest.mark.parametrize("interrupt", [_LandsInTheSender, _AbortLandsInTheSender])
def test_an_interrupt_of_the_sender_mid_round_trip_is_the_senders_alone(
    redis_url: str, interrupt: type[BaseException]
) -> None:
    # A time limit or an abort aimed at the thread that sends a group (its actor was calling
    # send(), or its start outlived the job's limit) must not become the outcome of the other
    # threads' calls in that group: theirs get an error they retry on.
    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-interrupted"], args=[]) == 1  # the script is loaded
    replies = group._connection.replies

    def interrupted_while_reading(commands):  # type: ignore[no-untyped-def]
        replies(commands)  # the scripts ran; the sender is interrupted as it reads the replies
        raise interrupt

    group._connection.replies = interrupted_while_reading  # type: ignore[method-assign]
    follower = _Call(count, ["gc-interrupted"], [])
    group._pending = [follower]
    with pytest.raises(interrupt):
        group(count, keys=["gc-interrupted"], args=[])
    group._connection.replies = replies  # type: ignore[method-assign]

    assert follower.finished
    assert isinstance(follower.error, redis.ConnectionError), follower.error
    assert int(client.get("gc-interrupted")) == 3  # both ran: the follower's retry sees it
    assert group(count, keys=["gc-interrupted"], args=[]) == 4  # and nothing waits


#: Where a sender hands on (GroupCommit._hand_on and what it calls).
_HAND_ON = ("GroupCommit._hand_on", "_HandOn.__init__", "GroupCommit._hand_on_steps", "_release")


def _send_interrupted_at(
    point: int, client: redis.Redis, count: Script
) -> tuple[bool, GroupCommit, _Call, threading.Thread]:
    """One group sent by this thread, with a member in it and a call that comes while it is in
    flight, interrupted at ``point`` of its hand-on: whether the interrupt landed, the group
    commit, the member and the thread of the call that came meanwhile."""
    group = GroupCommit(client)
    member = _Call(count, ["gc-hand-on"], [])  # in the group the sender takes
    group._pending = [member]
    replies = group._connection.replies
    meanwhile = threading.Thread(target=group, args=(count,), daemon=True,
                                 kwargs={"keys": ["gc-hand-on"], "args": []})  # fmt: skip

    def a_call_comes_meanwhile(commands):  # type: ignore[no-untyped-def]
        group._connection.replies = replies  # type: ignore[method-assign]  # once
        meanwhile.start()
        while not group._pending:  # it waits behind this round trip
            time.sleep(0.001)
        answers = replies(commands)
        # In this, the sending thread.
        sys.setprofile(interrupting_at(point, _HAND_ON, _LandsInTheSender))
        return answers

    group._connection.replies = a_call_comes_meanwhile  # type: ignore[method-assign]
    try:
        group(count, keys=["gc-hand-on"], args=[])
        return False, group, member, meanwhile
    except _LandsInTheSender:
        return True, group, member, meanwhile
    finally:
        sys.setprofile(None)


def _each_interrupt_point(
    client: redis.Redis, count: Script
) -> Iterator[tuple[int, GroupCommit, _Call, threading.Thread]]:
    """``_send_interrupted_at`` at each point of the hand-on in turn, from the second (the
    first is its entry) until one runs to its end uninterrupted. Yields the point and what it
    returned."""
    assert GroupCommit(client)(count, keys=["gc-hand-on"], args=[]) == 1  # the script is loaded
    for point in range(2, 200):
        interrupted, group, member, meanwhile = _send_interrupted_at(point, client, count)
        yield point, group, member, meanwhile
        meanwhile.join(timeout=5)
        assert not meanwhile.is_alive(), f"the call that came meanwhile left at {point}"
        if not interrupted:  # every point of the hand-on has had its interrupt
            assert point > 5
            return
    pytest.fail("the hand-on never ran to its end")


def test_an_interrupt_anywhere_in_the_hand_on_leaves_no_thread_waiting(redis_url: str) -> None:
    # The sender of a group wakes its members and hands the sending to the first call that
    # came meanwhile. An interrupt landing anywhere in that must still wake each of them, or
    # they (and every later call of the process) wait for ever. Every point where CPython
    # delivers one but the hand-on's entry, which no Python code can guard.
    client, count, _ = _counting(redis_url)
    for point, group, member, _ in _each_interrupt_point(client, count):
        assert member.finished and member.wake.acquire(timeout=5), f"member left at {point}"
        later = threading.Thread(target=group, args=(count,), daemon=True,
                                 kwargs={"keys": ["gc-hand-on"], "args": []})  # fmt: skip
        later.start()
        later.join(timeout=5)
        assert not later.is_alive(), f"a later call waited for ever after {point}"


def test_an_error_of_the_round_trip_itself_is_every_calls(redis_url: str) -> None:
    _, count, group = _counting(redis_url)

    def refused(commands):  # type: ignore[no-untyped-def]
        raise redis.AuthenticationError("invalid password")

    group._connection.replies = refused  # type: ignore[method-assign]
    follower = _Call(count, ["gc-refused"], [])
    group._pending = [follower]
    with pytest.raises(redis.AuthenticationError):
        group(count, keys=["gc-refused"], args=[])
    assert isinstance(follower.error, redis.AuthenticationError)


def test_a_group_of_different_scripts_gives_each_call_its_own_answer_after_a_flush(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    echo = client.register_script("return 'echo ' .. ARGV[1]")
    count = client.register_script("return redis.call('INCR', KEYS[1])")
    group = GroupCommit(client)
    calls = [_Call(echo, [], ["a"]), _Call(count, ["gc-mixed"], []), _Call(echo, [], ["b"])]
    client.script_flush()  # both scripts forgotten: the group must load each and resend

    group._send(calls)

    assert [call.outcome() for call in calls] == [b"echo a", 1, b"echo b"]
    assert int(client.get("gc-mixed")) == 1  # the call that met NoScriptError ran once


def test_a_sender_interrupted_before_it_took_its_group_leaves_no_one_waiting(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    script = scripts_for(client).start
    group = GroupCommit(client)
    script_keys, args = start_call("j", ttl_s=60, queue="default", actor="a", running_until=2**40)

    class Interrupt(BaseException):
        pass

    original_lock = group._lock

    class _InterruptOnSecondEntry:
        """The group's lock, raising (as a time limit would) when the sender comes back to take
        its group."""

        entries = 0

        def __enter__(self) -> None:
            self.entries += 1
            if self.entries == 2:
                raise Interrupt
            original_lock.acquire()

        def __exit__(self, *exc: object) -> None:
            original_lock.release()

    group._lock = _InterruptOnSecondEntry()  # type: ignore[assignment]
    with pytest.raises(Interrupt):
        group(script, keys=script_keys, args=args)
    group._lock = original_lock
    assert group._pending == [] and not group._sending
    done = threading.Event()
    threading.Thread(
        target=lambda: (group(script, keys=script_keys, args=args), done.set())
    ).start()
    assert done.wait(5)


def _counting(redis_url: str) -> tuple[redis.Redis, Script, GroupCommit]:
    """A client, a script that counts calls in KEYS[1], and a group commit on the client."""
    client = redis.Redis.from_url(redis_url)
    return client, client.register_script("return redis.call('INCR', KEYS[1])"), GroupCommit(client)


def test_a_lone_call_after_redis_forgot_its_script_loads_it_and_runs_once(
    redis_url: str,
) -> None:
    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-lone"], args=[]) == 1
    client.script_flush()

    assert group(count, keys=["gc-lone"], args=[]) == 2
    assert int(client.get("gc-lone")) == 2


def _held_client_id(group: GroupCommit) -> int:
    connection = group._connection._connection
    connection.send_command("CLIENT", "ID")
    return int(connection.read_response())


def test_calls_go_over_one_held_connection_that_survives_redis_closing_it(
    redis_url: str,
) -> None:
    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-held"], args=[]) == 1
    held = _held_client_id(group)
    assert group(count, keys=["gc-held"], args=[]) == 2
    assert _held_client_id(group) == held  # the same connection, not one checked out per call

    # Redis closes it while the process is idle (a restart, a timeout): the next call notices
    # before it sends, reconnects, and runs once, rather than failing its job's settlement.
    client.client_kill_filter(_id=held)
    assert group(count, keys=["gc-held"], args=[]) == 3
    assert _held_client_id(group) != held
    assert int(client.get("gc-held")) == 3


def test_a_group_commit_whose_callers_resend_checks_its_connection_only_after_it_sat_idle(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's history (every start sent again by settle()) skips the check of its busy
    # connection. Closed under it, the next call fails without running, and the one after
    # reconnects; after an idle spell the check comes back and the call just runs.
    monkeypatch.setattr("middleware.state.group_commit.STALE_AFTER_IDLE_S", 0.3)
    client, count, _ = _counting(redis_url)
    group = GroupCommit(client, resends=True)
    assert group(count, keys=["gc-resends"], args=[]) == 1
    client.client_kill_filter(_id=_held_client_id(group))
    with pytest.raises(redis.ConnectionError):
        group(count, keys=["gc-resends"], args=[])
    assert int(client.get("gc-resends")) == 1  # its write never reached Redis
    assert group(count, keys=["gc-resends"], args=[]) == 2

    client.client_kill_filter(_id=_held_client_id(group))
    time.sleep(0.35)
    assert group(count, keys=["gc-resends"], args=[]) == 3


def test_a_round_trip_that_breaks_off_leaves_no_reply_for_the_next_one(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    echo = client.register_script("return ARGV[1]")
    group = GroupCommit(client)
    assert group(echo, keys=[], args=["warm"]) == b"warm"
    connection = group._connection._connection

    class Interrupt(BaseException):
        pass

    original = connection.read_response

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise Interrupt  # as a time limit landing between the write and the reply would

    connection.read_response = interrupted
    with pytest.raises(Interrupt):
        group(echo, keys=[], args=["lost"])
    connection.read_response = original
    # The reply to "lost" is never read as the answer to the next call.
    assert group(echo, keys=[], args=["next"]) == b"next"


def test_a_forked_child_takes_a_connection_of_its_own(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from middleware.state import group_commit

    client = redis.Redis.from_url(redis_url)
    echo = client.register_script("return ARGV[1]")
    group = GroupCommit(client)
    assert group(echo, keys=[], args=["parent"]) == b"parent"
    parents = group._connection._connection
    real_pid = group_commit.os.getpid()
    monkeypatch.setattr(group_commit.os, "getpid", lambda: real_pid + 1)
    assert group(echo, keys=[], args=["child"]) == b"child"
    assert group._connection._connection is not parents


def test_a_group_commit_follows_its_client_to_the_pool_it_is_given(redis_url: str) -> None:
    from urllib.parse import urlparse

    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-moved"], args=[]) == 1
    # As workers.bootstrap.repoint moves a broker's client: a new pool, the old one closed.
    old = client.connection_pool
    db = 2 if old.connection_kwargs.get("db") == 1 else 1
    client.connection_pool = redis.ConnectionPool.from_url(
        urlparse(redis_url)._replace(path=f"/{db}").geturl()
    )
    old.disconnect()
    moved = redis.Redis(connection_pool=client.connection_pool)
    try:
        assert group(count, keys=["gc-moved"], args=[]) == 1
        assert int(moved.get("gc-moved")) == 1
        assert int(redis.Redis.from_url(redis_url).get("gc-moved")) == 1  # the old one untouched
    finally:
        moved.flushdb()
        client.connection_pool.disconnect()


def test_a_child_forked_while_another_thread_sends_runs_its_own_calls(redis_url: str) -> None:
    import os
    import signal
    import time

    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-fork"], args=[]) == 1
    # Another thread of the parent has a round trip in flight when the process forks.
    in_flight, finish = threading.Event(), threading.Event()
    replies = group._connection.replies

    def slow_replies(commands):  # type: ignore[no-untyped-def]
        in_flight.set()
        finish.wait(30)
        return replies(commands)

    group._connection.replies = slow_replies  # type: ignore[method-assign]
    sender = threading.Thread(target=group, args=(count,), kwargs={"keys": ["gc-fork"], "args": []})
    sender.start()
    assert in_flight.wait(10)
    group._connection.replies = replies  # type: ignore[method-assign]
    pid = os.fork()
    if pid == 0:  # the child: its call must not wait for the parent's sender
        signal.alarm(10)
        try:
            code = 0 if group(count, keys=["gc-fork-child"], args=[]) == 1 else 1
        except BaseException:
            code = 2
        os._exit(code)
    try:
        deadline = time.monotonic() + 15
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, "the child's call never returned"
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        if not done[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        finish.set()
        sender.join(10)
    assert int(client.get("gc-fork-child")) == 1
    assert int(client.get("gc-fork")) == 2  # the parent's call went through as well


# --- posted calls: no thread waits for them ------------------------------------------------


class _Landings:
    """What a posted call's ``done`` was given, and a way to wait for it."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, BaseException | None]] = []
        self.event = threading.Event()

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.got.append((result, error))
        self.event.set()


def _connected_poster(group: GroupCommit, count: Script) -> None:
    """Have ``group``'s poster connect, and its script loaded, before round trips are counted."""
    landed = _Landings()
    group.post(count, keys=["gc-post-connect"], args=[], done=landed)
    assert landed.event.wait(5) and group.drain(1) == 0


def test_a_posted_call_never_joins_the_round_trip_a_thread_waits_for(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker thread posts its job's outcome and starts its next job: the start goes alone,
    # at once, and the outcome with the poster's next tick.
    monkeypatch.setattr("middleware.state.posted_calls.POST_LINGER_S", 0.5)
    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-post-apart"], args=[]) == 1  # the script is loaded
    _connected_poster(group, count)
    landed = _Landings()
    trips = RoundTrips(client)
    try:
        group.post(count, keys=["gc-post-apart"], args=[], done=landed)
        assert group(count, keys=["gc-post-apart"], args=[]) == 2  # the posted call not yet
        assert trips.count == 1 and landed.got == []
        assert landed.event.wait(5)
    finally:
        trips.close()
    assert trips.count == 2
    assert landed.got == [(3, None)]
    assert int(client.get("gc-post-apart")) == 3
    assert group.drain(1) == 0


def test_the_calls_posted_within_a_tick_go_in_one_round_trip(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("middleware.state.posted_calls.POST_LINGER_S", 0.2)
    client, count, group = _counting(redis_url)
    _connected_poster(group, count)
    landed = _Landings()
    trips = RoundTrips(client)
    try:
        for _ in range(5):
            group.post(count, keys=["gc-post-tick"], args=[], done=_Landings())
        group.post(count, keys=["gc-post-tick"], args=[], done=landed)
        assert landed.event.wait(5)
    finally:
        trips.close()
    assert trips.count == 1
    assert int(client.get("gc-post-tick")) == 6
    assert group.drain(1) == 0


def test_a_call_posted_again_with_the_same_done_is_posted_once(redis_url: str) -> None:
    # Outcomes posts again what a late interrupt cut off (middleware.outcomes, Outcomes._post).
    client, count, group = _counting(redis_url)
    landed = _Landings()
    for _ in range(3):
        group.post(count, keys=["gc-post-once"], args=[], done=landed)
    assert landed.event.wait(5)
    assert group.drain(1) == 0
    assert landed.got == [(1, None)]
    assert int(client.get("gc-post-once")) == 1


def test_a_posted_call_no_thread_carries_is_sent_by_the_poster(redis_url: str) -> None:
    client, count, group = _counting(redis_url)
    landed = _Landings()
    group.post(count, keys=["gc-post-alone"], args=[], done=landed)
    assert landed.event.wait(5)
    assert landed.got == [(1, None)]
    assert int(client.get("gc-post-alone")) == 1
    assert group.drain(1) == 0


def test_a_posted_call_meeting_an_unreachable_redis_is_sent_again_until_it_answers(
    redis_url: str,
) -> None:
    client, count, group = _counting(redis_url)
    assert group(count, keys=["gc-post-outage"], args=[]) == 1
    replies, refusals = group._post_connection.replies, []

    def unreachable_twice(commands):  # type: ignore[no-untyped-def]
        if len(refusals) < 2:
            refusals.append(time.monotonic())
            raise redis.ConnectionError("Connection refused")
        return replies(commands)

    group._post_connection.replies = unreachable_twice  # type: ignore[method-assign]
    landed = _Landings()
    posted_at = time.monotonic()
    group.post(count, keys=["gc-post-outage"], args=[], done=landed)
    assert landed.event.wait(10)
    assert landed.got == [(2, None)]  # told once, of the round trip that reached Redis
    assert int(client.get("gc-post-outage")) == 2  # the refused ones never ran
    assert len(refusals) == 2
    assert refusals[1] - refusals[0] >= 0.09  # backing off: 0.1 s, then 0.2 s
    assert time.monotonic() - posted_at >= 0.29
    assert group.drain(1) == 0


def test_a_script_error_of_a_posted_call_is_final(redis_url: str) -> None:
    _, count, group = _counting(redis_url)
    landed = _Landings()
    group.post(count, keys=[], args=[], done=landed)  # no key to count in: the script fails
    assert landed.event.wait(5)
    assert group.drain(1) == 0
    [(result, error)] = landed.got
    assert result is None and isinstance(error, redis.ResponseError)


def test_drain_returns_once_every_posted_call_of_many_threads_has_landed(
    redis_url: str,
) -> None:
    client, count, group = _counting(redis_url)
    landed = _Landings()

    def post_and_call(i: int) -> None:
        for _ in range(20):
            group.post(count, keys=["gc-post-many"], args=[],
                       done=lambda result, error: landed(result, error))  # one done a post
            group(count, keys=[f"gc-post-many-{i}"], args=[])

    threads = [threading.Thread(target=post_and_call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert group.drain(5) == 0
    assert len(landed.got) == 160 and all(error is None for _, error in landed.got)
    assert sorted(result for result, _ in landed.got) == list(range(1, 161))
    assert int(client.get("gc-post-many")) == 160


def test_a_stopping_history_writes_the_outcomes_posted_first(redis_url: str) -> None:
    # JobHistory stops the history as the worker shuts down: an outcome posted by the last
    # jobs must be in Redis by then, or those jobs run again after the heartbeat timeout.
    client, count, _ = _counting(redis_url)
    history = History(client)
    history.start()
    replies = history.commits._post_connection.replies

    def slow(commands):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # a Redis slow to answer
        return replies(commands)

    history.commits._post_connection.replies = slow  # type: ignore[method-assign]
    landed = _Landings()
    history.commits.post(count, keys=["gc-post-stop"], args=[], done=landed)
    history.stop()
    assert landed.got == [(1, None)]


def test_a_hand_on_run_again_after_an_interrupt_leaves_a_later_sender_alone(
    redis_url: str,
) -> None:
    # The interrupt lands just after the sender ended the sending; before the hand-on runs
    # again, another thread begins a round trip. Deciding the end a second time would mark the
    # sending over while that round trip is in flight, and a third caller would write a second
    # group on the same connection at once.
    _, count, group = _counting(redis_url)
    assert group(count, keys=["gc-again"], args=[]) == 1
    replies = group._connection.replies
    in_flight, release = threading.Event(), threading.Event()

    def held_back(commands):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "later":
            in_flight.set()
            release.wait(10)
        return replies(commands)

    group._connection.replies = held_back  # type: ignore[method-assign]
    later = threading.Thread(target=group, args=(count,), name="later", daemon=True,
                             kwargs={"keys": ["gc-again"], "args": []})  # fmt: skip

    def profile(frame: Any, event: str, arg: Any) -> None:
        if (frame.f_code.co_qualname == "GroupCommit._hand_on_steps" and event == "c_return"
                and not group._sending and not later.is_alive()):  # fmt: skip
            later.start()
            assert in_flight.wait(5)
            raise _LandsInTheSender

    sys.setprofile(profile)
    try:
        with pytest.raises(_LandsInTheSender):
            group(count, keys=["gc-again"], args=[])
    finally:
        sys.setprofile(None)
    try:
        assert later.is_alive() and group._sending, "the later round trip's sending was ended"
    finally:
        release.set()
        later.join(timeout=5)
    assert group(count, keys=["gc-again"], args=[]) == 4
