"""Run a job that was in flight when its worker died alone in its worker process.

When a process dies (SIGKILL, OOM, a segfault in a C extension), every job running in it dies
too, and on redelivery each of them counts a ``crashed`` attempt, though only one of them may be
what kills workers. So a job that comes back with a lost attempt runs alone: it waits until the
other jobs running in its process have finished, and no other job of the process starts while
it runs. If it kills the process again, it alone spends ``crashed`` budget; the jobs that died
beside it the first time run normally on their next delivery, in parallel again.

The cost: while such a job waits and runs, its process runs nothing else (other processes and
pools are unaffected); the wait is bounded by the running jobs' time limits. Jobs that are not
suspects pay one uncontended lock acquire and release.
"""

from __future__ import annotations

import threading


class RunAlone:
    """A readers-writer gate: ordinary jobs share it, a suspect job takes it alone.

    Writers are preferred: once a suspect waits, new ordinary jobs wait behind it, so it cannot
    be starved by a steady stream of work.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._sharing = 0
        self._alone = False
        self._waiting_alone = 0

    def share(self) -> None:
        """Enter as an ordinary job (waits while a suspect runs or waits)."""
        with self._lock:
            while self._alone or self._waiting_alone:
                self._lock.wait()
            self._sharing += 1

    def unshare(self) -> None:
        """Leave as an ordinary job."""
        with self._lock:
            self._sharing -= 1
            if self._sharing == 0:
                self._lock.notify_all()

    def enter_alone(self) -> None:
        """Enter as a suspect: wait until no other job runs, then keep the others out."""
        with self._lock:
            self._waiting_alone += 1
            try:
                while self._alone or self._sharing:
                    self._lock.wait()
            finally:
                self._waiting_alone -= 1
            self._alone = True

    def leave_alone(self) -> None:
        """Leave as a suspect; the others may start again."""
        with self._lock:
            self._alone = False
            self._lock.notify_all()
