"""Script calls from many threads, sent together: one round trip for all that wait.

Every job's attempt is counted in Redis before it runs (``History.start_attempt``), and its
outcome is written by the script that acks it (``middleware.outcomes``: a finish, a retry, a
dead letter). A round trip costs a worker far more CPU than the script costs Redis, and a
process's threads start and end their jobs at nearly the same moments. ``GroupCommit`` lets the
first thread that calls send its call at once, alone; threads that call while that round trip
is in flight wait, and the first of them then sends all their calls, whatever their scripts, in
one pipeline. An idle process pays nothing extra; a busy one pays one round trip per group
instead of per call. Each call is still its own atomic script, with its own answer or error.
``EvalqRedisBroker`` has one of its own, for its sends and for Dramatiq's dispatch script (a
consumer's fetches; ``GroupedScript``).

A call can also be posted (``post``): no thread waits for it. A worker thread posts its job's
outcome and goes on to its next job. A poster thread sends the posted calls every tick
(``POST_LINGER_S``), on a connection of their own, and sends again, backing off, one that met an
unreachable Redis, until it lands (``middleware.state.posted_calls``). Posted calls never join a
waiting thread's group: a job's start waits for a round trip of starts alone. When outcomes rode
the starts, a group held 4.3 calls instead of 1.6 and took 726 µs instead of 324, and every
start queued behind one.

Only one group of waited calls is ever in flight, so a ``GroupCommit`` sends them on one
connection of its client's pool that it keeps (``HeldConnection``), and posted calls on another.
Their EVALSHA commands are packed and written at once and their replies read back, without
redis-py's per-command path (pool checkout and checks, retry wrapper, metrics), which cost a
worker about as much CPU again as the round trip itself.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from middleware.state.connections import TRANSIENT
from middleware.state.held_connection import STALE_AFTER_IDLE_S, HeldConnection
from middleware.state.posted_calls import Landed, Posts
from middleware.state.replication import ReplicaWait

_UNSET: Any = object()


class _Sent:
    """One script call, as a round trip sends it and gives it its answer."""

    __slots__ = ("args", "durable", "error", "finished", "keys", "result", "script")

    def __init__(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any], durable: bool = False
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.durable = durable
        self.result: Any = _UNSET
        self.error: BaseException | None = None
        self.finished = False


class _Call(_Sent):
    """A call its thread waits for (``GroupCommit.__call__``)."""

    __slots__ = ("lead", "wake")

    def __init__(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any], durable: bool = False
    ) -> None:
        super().__init__(script, keys, args, durable)
        # Handed the sending by the sender before it: set before `wake` is released.
        self.lead = False
        # Held from the start; released once, when the call is finished or handed the sending,
        # so that a sender wakes exactly the threads it has news for.
        self.wake = threading.Lock()
        self.wake.acquire()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class _PostedCall(_Sent):
    """A call no thread waits for (``GroupCommit.post``), sent by the poster thread."""

    __slots__ = ("delay", "done", "due", "failing_since")

    def __init__(self, script: Script, keys: Sequence[Any], args: Sequence[Any],
                 done: Landed) -> None:  # fmt: skip
        super().__init__(script, keys, args)
        self.done = done
        # Meeting an unreachable Redis: since when, its backoff, when it goes again.
        self.failing_since = 0.0
        self.delay = 0.0
        self.due = 0.0


class _HandOn:
    """How far a sender has got in handing on (``GroupCommit._hand_on``)."""

    __slots__ = ("decided", "successor", "woken")

    def __init__(self) -> None:
        self.decided = False
        self.successor: _Call | None = None
        self.woken: list[_Call] = []


def _interrupted() -> redis.ConnectionError:
    """What a call gets whose round trip its sender was interrupted in: an error it retries on,
    as after a dropped connection (its script may or may not have run)."""
    return redis.ConnectionError("the thread sending its round trip was interrupted")


def _release(wake: threading.Lock) -> None:
    """Release a call's wake-up, once or again: a hand-on run again after an interrupt may
    release one a second time, before or after its thread took it."""
    if wake.locked():  # else released already and not yet taken; only the hand-on releases
        wake.release()


class GroupCommit:
    """Runs scripts for many threads, in one round trip for the calls that overlap.

    Parameters:
      client(redis.Redis): Where the scripts run (each registered on it).
      replicas(ReplicaWait | None): What makes a round trip holding a ``durable`` call return
        only once a replica has it (None: no call waits).
      resends(bool): Whether every caller sends a call again that failed on a dropped
        connection (a worker's history: ``settle``); then the connection is checked before a
        round trip only after it sat idle (``STALE_AFTER_IDLE_S``), else before each one.
        Posted calls are always sent again.
    """

    def __init__(self, client: redis.Redis, *, replicas: ReplicaWait | None = None,
                 resends: bool = False) -> None:  # fmt: skip
        self._connection = HeldConnection(
            client, check_after_idle_s=STALE_AFTER_IDLE_S if resends else 0.0
        )
        self._replicas = replicas
        self._lock = threading.Lock()
        self._pending: list[_Call] = []
        self._sending = False
        self._post_connection = HeldConnection(client, check_after_idle_s=STALE_AFTER_IDLE_S)
        self._posts = Posts(self._send_posted)
        _LIVE.add(self)

    def _forget_other_threads(self) -> None:
        # A forked child has only the thread that forked: a round trip another thread had in
        # flight, its lock and the calls waiting on it are the parent's, and would keep every
        # call of the child waiting for a sender that does not exist there.
        self._lock = threading.Lock()
        self._pending = []
        self._sending = False
        self._posts = Posts(self._send_posted)

    def __call__(
        self, script: Script, *, keys: Sequence[Any], args: Sequence[Any], durable: bool = False
    ) -> Any:
        """``script``'s result for ``keys`` and ``args``, or the error it raised; a ``durable``
        call returns once a replica has its writes too (see ``middleware.state.replication``)."""
        call = _Call(script, keys, args, durable)
        leading, group = False, []
        try:
            with self._lock:
                self._pending.append(call)
                if not self._sending:
                    # Ours before it is set: an interrupt (a time limit, an abort) landing
                    # anywhere after still hands the sending on in the finally below.
                    leading = self._sending = True
            if not leading:
                call.wake.acquire()  # until the call is finished, or handed the sending
                if call.finished:
                    return call.outcome()
            with self._lock:
                group, self._pending = self._pending, []
            self._send(group, own=call)
        finally:
            if leading or call.lead:
                self._hand_on(call, group)
        return call.outcome()

    def post(self, script: Script, *, keys: Sequence[Any], args: Sequence[Any],
             done: Landed) -> None:  # fmt: skip
        """Run ``script`` for ``keys`` and ``args`` without waiting for it: the poster thread
        sends it within a tick (``middleware.state.posted_calls``). ``done`` is called, in the
        poster thread, with its result or its final error, and must not raise; a Redis or
        socket error is not final: the call is sent again, backing off, until Redis answers.
        Posted again with the same ``done``, the call is posted once."""
        self._posts.add(_PostedCall(script, keys, args, done))

    def drain(self, timeout_s: float) -> int:
        """Wait until every posted call has landed, for up to ``timeout_s``; how many have not
        (a worker stopping while Redis is unreachable)."""
        return self._posts.drain(timeout_s)

    def _send_posted(self, group: list[_PostedCall]) -> None:
        """Send ``group``, posted calls (some perhaps sent before), in one round trip on the
        connection kept for them; run by the poster thread only."""
        for call in group:
            call.result, call.error, call.finished = _UNSET, None, False
        self._send(group, connection=self._post_connection)

    def _hand_on(self, own: _Call | None, group: list[_Call]) -> None:
        """Wake the threads of the group just sent, and hand the sending to the first call
        that came meanwhile (or end it).

        An interrupt (a time limit, an abort of the sender's job) may land at any line of this;
        left half done, it would leave threads waiting for a wake-up or a sender that never
        comes, and every later call of the process behind them. So every step can run again:
        the steps are repeated until they are all done, and the interrupt is raised after.
        CPython delivers a pending interrupt as a function is entered, after a call, or on a
        loop's jump back: nothing before the ``try`` below is one of those but this method's
        own entry, which no Python code can guard."""
        progress: _HandOn | None = None
        interrupt: BaseException | None = None
        while True:
            try:
                progress = progress or _HandOn()
                self._hand_on_steps(own, group, progress)
                break
            except BaseException as error:
                interrupt = interrupt or error
        if interrupt is not None:
            raise interrupt

    def _hand_on_steps(self, own: _Call | None, group: list[_Call], progress: _HandOn) -> None:
        with self._lock:
            for unsent in group:  # the sender was interrupted before _send ended
                if not unsent.finished:
                    unsent.error = _interrupted()
                    unsent.finished = True
            if own in self._pending:
                # Interrupted before it took the group: its own call leaves with it, and those
                # waiting stay pending for the next sender.
                self._pending = [c for c in self._pending if c not in group and c is not own]
            if not progress.decided:
                # Decided once: after the sending ended, another call may lead. No call stands
                # between these stores, where an interrupt could land.
                successor = self._pending[0] if self._pending else None
                if successor is None:
                    self._sending = False
                else:
                    successor.lead = True
                    progress.successor = successor
                progress.decided = True
        for finished in group:
            if finished is not own and finished not in progress.woken:
                _release(finished.wake)
                progress.woken.append(finished)
        if progress.successor is not None:
            _release(progress.successor.wake)

    def _send(self, group: Sequence[_Sent], own: _Call | None = None,
              connection: HeldConnection | None = None) -> None:  # fmt: skip
        """Send ``group`` in one round trip, each call getting its answer or error. ``own`` is
        the sending thread's call: it alone gets what was raised into that thread."""
        try:
            self._send_pipelined(group, connection or self._connection)
        except BaseException as error:
            if self._replicas is not None and isinstance(error, TRANSIENT):
                self._replicas.forget()
            # A Redis or socket error is the round trip's: every call in it gets it. Anything
            # else was raised into the sending thread (a time limit or an abort of its own job,
            # landing while it sent): its own call gets it, and the others an error they retry
            # on, as after a dropped connection (their scripts may or may not have run).
            theirs = error if isinstance(error, (redis.RedisError, OSError)) else _interrupted()
            for call in group:
                if call.result is _UNSET and call.error is None:
                    call.error = error if call is own else theirs
        finally:
            for call in group:
                call.finished = True

    def _send_pipelined(self, group: Sequence[_Sent], connection: HeldConnection) -> None:
        results = self._replies([_evalsha(call) for call in group], group, connection)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            # Redis restarted and forgot the scripts (a call that met NoScriptError did not
            # run): load them and send those calls again, in one round trip over the connection
            # that met the error.
            scripts = list({id(group[i].script): group[i].script for i in missing}.values())
            again = self._replies(
                [*(("SCRIPT", "LOAD", script.script) for script in scripts),
                 *(_evalsha(group[i]) for i in missing)],
                [group[i] for i in missing],
                connection,
            )  # fmt: skip
            refused = next((r for r in again[: len(scripts)] if isinstance(r, Exception)), None)
            for i, result in zip(missing, again[len(scripts) :], strict=True):
                results[i] = refused or result
        for call, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                call.error = result
            else:
                call.result = result

    def _replies(self, commands: list[tuple[Any, ...]], calls: Sequence[_Sent],
                 connection: HeldConnection) -> list[Any]:  # fmt: skip
        """The replies to ``commands``, sent in one round trip; followed by a replica's
        acknowledgement (``WAIT``) when one of ``calls`` is durable."""
        replicas = self._replicas
        tail = replicas.tail() if replicas is not None and any(c.durable for c in calls) else []
        if not tail:
            return connection.replies(commands)
        replies = connection.replies([*commands, *tail])
        replicas.check(tail, replies[len(commands) :])  # type: ignore[union-attr]
        return replies[: len(commands)]


class GroupedScript:
    """``script`` as redis-py's ``Script`` is called (``keys=``, ``args=``), run through
    ``commits``: for a caller that looks its scripts up by name, as Dramatiq's broker does."""

    __slots__ = ("_commits", "_script")

    def __init__(self, script: Script, commits: GroupCommit) -> None:
        self._script = script
        self._commits = commits

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self._commits(self._script, keys=keys, args=args)


#: Every group commit of the process (a broker's sends, a worker's history), for the fork hook.
_LIVE: weakref.WeakSet[GroupCommit] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for group in list(_LIVE):
        group._forget_other_threads()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _evalsha(call: _Sent) -> tuple[Any, ...]:
    # EVALSHA itself: redis-py's Script would first ask SCRIPT EXISTS in a pipeline, a round trip
    # of its own; a NoScriptError reply is handled by _send_pipelined.
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
