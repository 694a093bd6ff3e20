"""Keep a worker process's pool of threads whole: a worker thread that dies is replaced.

Dramatiq's worker threads catch what a job raises, but not a ``BaseException`` raised by a hook
or by an interrupt that lands after the job returned (a time limit, an abort, a ``SystemExit``
in a hook): the thread dies, the pool shrinks for good, and the delivery it held stays unacked
until the process restarts. Python prints the traceback to stderr unredacted.

``ThreadSupervisor`` logs such a death at CRITICAL (the traceback redacted), starts a thread in
its place, and ends the delivery the dead thread held: acked when its outcome was written
already, else put back on its queue, where it counts as a lost attempt (``crashed``) like a job
whose process died. A delivery a thread moved on from without acking it (an ack that raised)
is ended the same way. The cost per job is two dictionary writes; the watch is a thread that
wakes when a worker thread dies, and once per interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Broker, MessageProxy
from dramatiq.errors import BrokerConnectionError
from dramatiq.worker import WorkerThread

from middleware.core.failure_text import traceback_text, type_name

logger = logging.getLogger("evalq.supervision")


class ThreadSupervisor(dramatiq.Middleware):
    """Replaces a worker thread that died, logs it at CRITICAL, and ends the delivery it held.

    Put it first in the stack: its before hook then runs before any other, its after hooks last.

    Parameters:
      release(Callable[[MessageProxy], None] | None): Called with a dead thread's message, to
        free what its attempt holds in the process (the error policy's isolation gate).
      interval_s(float): How often the pool is checked besides at each death, in seconds
        (default 1.0).
    """

    def __init__(
        self,
        *,
        release: Callable[[MessageProxy], None] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.release = release
        self.interval_s = interval_s
        self._held: dict[int | None, MessageProxy] = {}
        self._lock = threading.Lock()
        self._orphans: list[MessageProxy] = []
        self._dying: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_hook: Callable[[threading.ExceptHookArgs], Any] | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        self._previous_hook = threading.excepthook
        threading.excepthook = self._on_thread_death
        self._thread = threading.Thread(
            target=self._watch, args=(worker,), name="evalq-thread-supervisor", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # Threads stopping now are not dying.
        self._stop.set()
        self._wake.set()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._previous_hook is not None:
            threading.excepthook = self._previous_hook

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        ident = threading.get_ident()
        previous = self._held.get(ident)
        self._held[ident] = message
        if previous is not None:
            # This thread finished its last message without acking it (the ack raised).
            logger.critical("job %s: its delivery was never acked; ending it now",
                            previous.message_id)  # fmt: skip
            with self._lock:
                self._orphans.append(previous)
            self._wake.set()

    def after_ack(self, broker: Broker, message: MessageProxy) -> None:
        self._held.pop(threading.get_ident(), None)

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        self._held.pop(threading.get_ident(), None)

    # --- the watch ---------------------------------------------------------------------------

    def _on_thread_death(self, args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.thread, WorkerThread):
            assert self._previous_hook is not None
            self._previous_hook(args)
            return
        # Not Python's default hook: it would print the traceback unredacted.
        logger.critical(
            "worker thread %s died of %s; starting another\n%s",
            args.thread.name, type_name(args.exc_value), traceback_text(args.exc_value),
        )  # fmt: skip
        with self._lock:
            self._dying.append(args.thread)
        self._wake.set()

    def _watch(self, worker: Any) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._replace_dead(worker)
                self._end_orphans(worker)
            except Exception:
                logger.critical("thread supervision pass failed", exc_info=True)

    def _replace_dead(self, worker: Any) -> None:
        with self._lock:
            dying, self._dying = self._dying, []
        for thread in dying:
            thread.join(timeout=1.0)  # it is leaving its excepthook
        for thread in list(worker.workers):
            if thread.is_alive() or not thread.running:
                continue  # alive, or stopped on purpose
            worker.workers.remove(thread)
            worker._add_worker()
            logger.critical("worker thread %s replaced; %d worker threads run",
                            thread.name, len(worker.workers))  # fmt: skip
            message = self._held.pop(thread.ident, None)
            if message is not None:
                with self._lock:
                    self._orphans.append(message)

    def _end_orphans(self, worker: Any) -> None:
        with self._lock:
            pending, self._orphans = self._orphans, []
        waiting = []
        for message in pending:
            if not end_delivery(worker, message):
                waiting.append(message)  # Redis or the consumer away: next pass
            elif self.release is not None:
                self.release(message)
        if waiting:
            with self._lock:
                self._orphans.extend(waiting)


def end_delivery(worker: Any, message: MessageProxy) -> bool:
    """End a delivery no worker thread will post-process: nack it when it failed, else ack it
    (evalq's consumer puts back an attempt that has no outcome). Returns False when that must
    wait (its consumer restarting, or Redis away)."""
    consumer_thread = worker.consumers.get(message.queue_name)
    consumer = getattr(consumer_thread, "consumer", None)
    if consumer is None:
        return False
    try:
        if message.failed:
            consumer.nack(message)
        else:
            consumer.ack(message)
    except (redis.RedisError, BrokerConnectionError):
        logger.warning("job %s: could not end its delivery yet", message.message_id,
                       exc_info=True)  # fmt: skip
        return False
    return True
