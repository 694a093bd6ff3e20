"""Posted calls of a group commit: sent by a poster thread of their own, waited for by none.

A worker thread posts its job's outcome (``GroupCommit.post``) and goes on to its next job. The
poster thread sends what was posted on a connection kept for it, never in a waiting thread's
round trip: a thread's start, the one round trip a job waits for, then never waits behind the
outcomes of other jobs. While calls are posted the poster ticks every ``POST_LINGER_S`` and
sends, in one round trip, every call posted since its last tick; one that met an unreachable
Redis is sent again, backing off from 0.1 to 5 s and reported every ``POST_PATIENCE_S``, until
it lands. ``drain`` waits for them all as a worker stops.

Posting is idempotent per ``done``: the same call posted again, as a caller does when an
interrupt (a late time limit, a shutdown) landed while it posted, is posted once. Only the
poster thread sends, reads and lands posted calls, so an interrupt of a worker thread can
never leave one half sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from middleware.state.connections import TRANSIENT

logger = logging.getLogger("evalq.group_commit")

#: The poster thread's tick, in seconds: what was posted is sent within one tick and a round
#: trip, in one round trip for all of a tick's posts.
POST_LINGER_S = 0.002
#: How long an idle poster waits for a post before it looks again, in seconds: a post whose
#: wake-up an interrupt cut off is sent by then.
POST_IDLE_S = 1.0
#: How often posted calls that keep meeting an unreachable Redis are reported, in seconds (they
#: are sent again all along).
POST_PATIENCE_S = 60.0

#: What a posted call is given once it has its answer: its result, or the error that is final
#: (a Redis or socket error is not: the call is sent again until Redis answers).
Landed = Callable[[Any, BaseException | None], None]


class Posted(Protocol):
    """What ``Posts`` reads and keeps of a posted call (``group_commit._PostedCall``)."""

    done: Landed
    result: Any
    error: BaseException | None
    failing_since: float
    delay: float
    due: float


class Posts:
    """The posted calls of one group commit, and the poster thread that sends them.

    Parameters:
      send(Callable): Sends a list of posted calls in one round trip, each getting its result
        or error; run by the poster thread only.
    """

    def __init__(self, send: Callable[[list[Any]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        # Posted and not landed, by ``done``: one store adds a call, whatever thread posts it
        # and wherever an interrupt lands; the poster alone takes calls out.
        self._outstanding: dict[Landed, Posted] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._idle = False  # the poster waits for a post, not ticking
        self._warned_at = float("-inf")

    def add(self, call: Posted) -> None:
        """Post ``call``, unless a call with its ``done`` is posted already: the poster sends it
        within a tick (an idle one is woken)."""
        if self._thread is None:
            self._start()
        self._outstanding.setdefault(call.done, call)
        if self._idle:
            self._wake.set()

    def drain(self, timeout_s: float) -> int:
        """Wait until every posted call has landed, for up to ``timeout_s``; how many have not
        (a worker stopping while Redis is unreachable)."""
        deadline = time.monotonic() + timeout_s
        while self._outstanding and time.monotonic() < deadline:
            time.sleep(0.005)
        return len(self._outstanding)

    def tick(self) -> None:
        """Send every posted call that is not waiting to be sent again, in one round trip, and
        land each: give it its answer, or have it sent again later."""
        now = time.monotonic()
        calls = [call for call in list(self._outstanding.values()) if call.due <= now]
        if not calls:
            return
        self._send(calls)
        for call in calls:
            self._land(call)

    def _land(self, call: Posted) -> None:
        done, error = call.done, call.error
        if isinstance(error, (*TRANSIENT, OSError)):
            self._again(call)
            return
        try:
            done(None if error is not None else call.result, error)
        except Exception:
            logger.exception("the callback of a posted write raised")
        del self._outstanding[done]

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
                    self.tick()
                except Exception:  # never: the poster must outlive what a round trip raises
                    logger.exception("the poster of posted calls failed to send a round trip")
            self._idle = True
            if self._outstanding:
                continue
            self._wake.wait(POST_IDLE_S)
            self._wake.clear()
