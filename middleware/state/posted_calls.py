"""Posted calls of a group commit: sent with some other thread's round trip, waited for by none.

A worker thread posts its job's outcome (``GroupCommit.post``) and goes on to its next job,
whose start carries the outcome to Redis in the same round trip. ``Posts`` keeps what such
calls need beyond a group commit's own work: which have not landed yet (``drain`` waits for
them as a worker stops), which met an unreachable Redis and wait to be sent again (backing off
from 0.1 to 5 s, reported every ``POST_PATIENCE_S``), and a thread of its own that sends what no
thread's round trip carried: while calls are posted it ticks every ``POST_LINGER_S``, and sends
those that were pending at its last tick already.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from middleware.state.connections import TRANSIENT

logger = logging.getLogger("evalq.group_commit")

#: The poster thread's tick, in seconds: a posted call still pending at two of its ticks in a
#: row is sent by the poster; a worker thread takes about half of it to start its next job.
POST_LINGER_S = 0.002
#: How often posted calls that keep meeting an unreachable Redis are reported, in seconds (they
#: are sent again all along).
POST_PATIENCE_S = 60.0

#: What a posted call is given once it has its answer: its result, or the error that is final
#: (a Redis or socket error is not: the call is sent again until Redis answers).
Landed = Callable[[Any, BaseException | None], None]


class Posted(Protocol):
    """What ``Posts`` reads and keeps of a posted call (``group_commit._Call``)."""

    done: Landed | None
    result: Any
    error: BaseException | None
    finished: bool
    failing_since: float
    delay: float
    due: float
    seen: bool


class Posts:
    """The posted calls of one group commit.

    Parameters:
      send(Callable[[], None]): Sends the group commit's pending calls, unless a thread is
        sending already; run by the poster thread.
    """

    def __init__(self, send: Callable[[], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._outstanding: set[Posted] = set()
        self._resends: set[Posted] = set()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._idle = False  # the poster waits for a post, not ticking
        self._warned_at = float("-inf")

    def add(self, call: Posted) -> None:
        """Count ``call`` as posted, before it joins the pending calls: the poster ticks from
        now on until every posted call has landed (an idle one is woken)."""
        if self._thread is None:
            self._start()
        self._outstanding.add(call)
        if self._idle:
            self._wake.set()

    def drain(self, timeout_s: float) -> int:
        """Wait until every posted call has landed, for up to ``timeout_s``; how many have not
        (a worker stopping while Redis is unreachable)."""
        deadline = time.monotonic() + timeout_s
        while self._outstanding and time.monotonic() < deadline:
            time.sleep(0.005)
        return len(self._outstanding)

    def due(self) -> list[Posted]:
        """The calls whose wait to be sent again is over, taken out of waiting."""
        now = time.monotonic()
        with self._lock:
            due = [call for call in self._resends if call.due <= now]
            self._resends.difference_update(due)
        return due

    def land(self, call: Posted) -> None:
        """Give a posted call of the group just sent its answer, or have it sent again later.
        Runs again, harmlessly, when an interrupt landed in it (``GroupCommit._hand_on``)."""
        error = call.error
        if not call.finished or call in self._resends:
            return  # run again after it was put back to be sent again
        if isinstance(error, (*TRANSIENT, OSError)):
            self._again(call)
            return
        if call not in self._outstanding:
            return
        try:
            assert call.done is not None
            call.done(None if error is not None else call.result, error)
        except Exception:
            logger.exception("the callback of a posted write raised")
        self._outstanding.discard(call)

    def _again(self, call: Posted) -> None:
        now = time.monotonic()
        if not call.delay:
            call.failing_since = now
        call.delay = min(max(call.delay * 2, 0.1), 5.0)
        call.due = now + call.delay
        waited = now - call.failing_since
        if waited >= POST_PATIENCE_S and now - self._warned_at >= POST_PATIENCE_S:
            self._warned_at = now
            logger.critical("posted writes (outcomes of finished jobs) have waited %.0fs for "
                            "Redis; still trying", waited)  # fmt: skip
        with self._lock:
            self._resends.add(call)  # still outstanding: the poster's ticks send it when due

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="evalq-posted-calls",
                                            daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        # While calls are posted, tick every POST_LINGER_S: a wake-up per tick, not per post.
        # A post is announced only to an idle poster, which looks again before it waits.
        while True:
            while self._outstanding:
                self._idle = False
                time.sleep(POST_LINGER_S)
                try:
                    self._send()
                except Exception:  # never: the poster must outlive what a round trip raises
                    logger.exception("the poster of posted calls failed to send a round trip")
            self._idle = True
            if self._outstanding:
                continue
            self._wake.wait()
            self._wake.clear()
