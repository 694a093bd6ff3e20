"""Abort a job: cancel it before it runs, or interrupt the worker thread that runs it.

``request_abort`` is one atomic Redis script: it reads the job's state, and unless the job has
already finished it sets the job's abort key, marks a job that has not started (``queued``, or
``retrying`` between two attempts) ``aborted`` at once, and publishes the job id on
``keys.ABORT_CHANNEL``. A job that has not started is never run: the error policy sees the abort
key when the next attempt starts and dead-letters the job as ``aborted`` without running it.

``AbortWatcher`` stops a running one. In every worker process it knows which job each worker
thread runs, listens on the channel and, because a published message is lost while a
connection is down, also checks the abort keys of the jobs running here every second. It raises
``JobInterrupted`` (category ``aborted``, never retried) into the thread, as Dramatiq's
``TimeLimit`` does: the exception arrives when that thread next executes Python code, so a thread
blocked in C code (a socket read, say) stops only when that call returns. The provider client's
HTTP timeout bounds that wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware.threading import raise_thread_exception

from middleware.core.errors import JobAborted
from middleware.state import keys

logger = logging.getLogger("evalq.abort")


class JobInterrupted(JobAborted):
    """Raised into a worker thread whose job an operator aborted while it ran.

    Raised as a class (``PyThreadState_SetAsyncExc`` takes no instance), so it builds its own
    message. Being a ``JobAborted``, it is classified ``aborted`` and dead-lettered wherever it
    sits in the exception chain, whatever the policy file says.
    """

    def __init__(self, message: str = "aborted by an operator while it ran") -> None:
        super().__init__(message)
        # Whatever the thread was handling when the interrupt landed (a socket timeout, say) is
        # not why the job stopped: the operator is.
        self.__suppress_context__ = True


#: Raises an exception class in the thread with the given id.
Interrupter = Callable[[int, type[BaseException]], None]


@dataclass
class _Run:
    job_id: str
    interrupted: bool = False


class RunningJobs:
    """Which job each worker thread of this process runs, and which threads were interrupted.

    A thread is interrupted at most once per job, and only between ``started`` and ``finished``:
    the interruption happens under the same lock, so it never lands in the code that records the
    job's outcome.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, _Run] = {}

    def started(self, thread_id: int, job_id: str) -> None:
        """Thread ``thread_id`` now runs ``job_id``."""
        with self._lock:
            self._runs[thread_id] = _Run(job_id)

    def finished(self, thread_id: int) -> None:
        """Thread ``thread_id`` no longer runs a job."""
        with self._lock:
            self._runs.pop(thread_id, None)

    def not_interrupted(self) -> list[str]:
        """The jobs running here whose threads were not interrupted yet."""
        with self._lock:
            return sorted({run.job_id for run in self._runs.values() if not run.interrupted})

    def interrupt(self, job_id: str, interrupter: Interrupter) -> list[int]:
        """Interrupt every thread running ``job_id`` that was not interrupted yet; returns their
        ids."""
        hit = []
        with self._lock:
            for thread_id, run in self._runs.items():
                if run.job_id == job_id and not run.interrupted:
                    run.interrupted = True
                    interrupter(thread_id, JobInterrupted)
                    hit.append(thread_id)
        return hit


class AbortWatcher(dramatiq.Middleware):
    """Interrupts the worker thread running a job that an operator aborted.

    Put it after ``ErrorPolicy`` in the middleware list: its ``before_process_message`` then runs
    last (the attempt is counted and checked for an abort already) and its
    ``after_process_message`` first, so a thread is only ever interrupted while the actor itself
    runs, never while the outcome is being recorded.

    Parameters:
      client(redis.Redis): The Redis client (shared with the broker); the subscription takes a
        connection of its own from the pool.
      poll_interval_s(float): How often the abort keys of the jobs running in this process are
        checked, in seconds (a published request is lost while a connection is down).
        Defaults to 1.
      interrupter(Callable): Raises an exception class in a thread, by thread id; defaults to
        Dramatiq's ``raise_thread_exception``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        poll_interval_s: float = 1.0,
        interrupter: Interrupter = raise_thread_exception,
    ) -> None:
        self.client = client
        self.poll_interval_s = poll_interval_s
        self.interrupter = interrupter
        self.running = RunningJobs()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- hooks -------------------------------------------------------------------------------

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Before the first job: Dramatiq 2.2 starts worker threads before after_worker_boot.
        self.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        # Not before: a job still finishing during a graceful shutdown can still be aborted.
        self.stop()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        self.running.started(threading.get_ident(), message.message_id)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.running.finished(threading.get_ident())

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self.running.finished(threading.get_ident())

    # --- the listener ------------------------------------------------------------------------

    def start(self) -> None:
        """Start listening for aborts (once per worker process)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="evalq-abort-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def abort(self, job_id: str) -> None:
        """Interrupt the threads of this process that run ``job_id``, if any."""
        for thread_id in self.running.interrupt(job_id, self.interrupter):
            logger.warning("job %s: aborted by an operator; interrupting worker thread %d",
                           job_id, thread_id)  # fmt: skip

    def check_running(self) -> None:
        """Interrupt the jobs running here whose abort key is set."""
        job_ids = self.running.not_interrupted()
        if not job_ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(keys.abort_key(job_id))
        for job_id, aborted in zip(job_ids, pipe.execute(), strict=True):
            if aborted:
                self.abort(job_id)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(  # type: ignore[no-untyped-call]
                    ignore_subscribe_messages=True
                )
                pubsub.subscribe(keys.ABORT_CHANNEL)
                if failures:
                    logger.warning("Abort watcher: Redis is back; listening for aborts again.")
                failures = 0
                self._listen(pubsub)
            except redis.RedisError as error:
                failures += 1
                if failures == 1:
                    logger.warning("Abort watcher lost Redis (%s); reconnecting.", error)
                self._stop.wait(min(0.1 * 2**failures, 5.0))
            except Exception:
                logger.exception("Abort watcher failed; starting it again.")
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # a broken connection may fail to close; it is dropped
                        logger.debug("Could not close the abort subscription.", exc_info=True)

    def _listen(self, pubsub: Any) -> None:
        # Check at once: requests published while we were not subscribed are lost.
        next_check = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= next_check:
                self.check_running()
                next_check = time.monotonic() + self.poll_interval_s
            # Short waits, so that a stop is noticed quickly.
            wait = min(max(next_check - time.monotonic(), 0.0), 0.25)
            message = pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "message":
                self.abort(keys.text(message["data"]))
