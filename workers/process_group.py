"""Supervised child processes: started in their own session, never outliving evalq.

Every child evalq starts (worker pools, the embedded Redis) goes through :func:`spawn_supervised`,
which gives it two guarantees:

* It runs in a new session, so a terminal Ctrl-C reaches only evalq. evalq then decides the order
  of shutdown (workers first, Redis last, because workers still talk to Redis while they requeue).
* It carries ``PR_SET_PDEATHSIG``: if evalq dies without cleaning up (even by SIGKILL), the kernel
  sends the child SIGTERM. A child that forks (``dramatiq workers`` does) must pass that on to its
  own children; dramatiq's main process does.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_POLL_INTERVAL = 0.05


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child receive ``sig`` when its parent dies.

    The kernel ties the signal to the *thread* that forked the child: start children from a
    thread that lives as long as they should (the main thread). Returns None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolve prctl before forking: loading libraries in the child of a threaded parent is unsafe.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent_pid = os.getpid()

    def set_parent_death_signal() -> None:
        if prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
        # The parent may have died between fork() and prctl(); the signal would never come.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return set_parent_death_signal


def spawn_supervised(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with SIGTERM as its parent-death signal and no stdin."""
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=parent_death_signal(signal.SIGTERM),
    )


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # start_new_session made the child a group leader, so its pid is its process group id.
    # The group can outlive the leader (a forked grandchild), hence killpg even after exit.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _group_finished(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is None:
        return False
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # Members remain, but they may all be zombies waiting for an init that reaps slowly (or
    # never, in some containers): those are dead already, and waiting for them would stall stop.
    return not _has_live_member(proc.pid)


def _has_live_member(pgid: int) -> bool:
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return True
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def terminate_groups(procs: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """Stop children and everything they forked: SIGTERM, wait up to ``timeout`` s, SIGKILL.

    SIGTERM goes to each child itself, not to its whole group: ``dramatiq workers`` forwards it
    to its worker processes, and a worker that gets SIGTERM twice (once from us, once from
    dramatiq) exits at once instead of requeueing its messages. Whatever is left in a child's
    group once the child has exited gets SIGTERM then; whatever is left at the deadline,
    SIGKILL. Interrupting the wait (a second Ctrl-C) still SIGKILLs everything before re-raising.
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    left_behind_termed: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while True:
            pending = [proc for proc in procs if not _group_finished(proc)]
            if not pending or time.monotonic() >= deadline:
                break
            for proc in pending:
                if proc.returncode is not None and proc.pid not in left_behind_termed:
                    left_behind_termed.add(proc.pid)
                    _signal_group(proc, signal.SIGTERM)
            time.sleep(_POLL_INTERVAL)
    finally:
        for proc in procs:
            if not _group_finished(proc):
                logger.warning("pid %d did not stop within %.1f s; killing it", proc.pid, timeout)
                _signal_group(proc, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


class ProcessGroup:
    """Starts named child commands and stops them, and everything they forked, together.

    Each child runs in its own session and gets SIGTERM if this process dies (see
    :func:`spawn_supervised`). ``stop`` is idempotent and is also registered with ``atexit``
    (with its default timeout) as a last resort; leaving the ``with`` block calls it too.
    """

    def __init__(self) -> None:
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        # Children not yet stopped; a stopped group is never signalled again, since its id may
        # since have been reused by an unrelated process.
        self._unstopped: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._atexit_registered = False

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        log_path: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as the child called ``name``.

        ``env`` is added to (and overrides) this process's environment. With ``log_path`` the
        child's stdout and stderr are appended to that file; otherwise they are inherited.
        """
        if name in self._children:
            raise ValueError(f"a child named {name!r} was already started in this group")
        child_env = {**os.environ, **(env or {})}
        log: IO[bytes] | None = None
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
        proc = spawn_supervised(
            argv,
            env=child_env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
        )
        self._children[name] = proc
        self._unstopped.append(proc)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        logger.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
        return proc

    def poll(self) -> dict[str, int | None]:
        """Exit code of every child by name; None for those still running."""
        return {name: proc.poll() for name, proc in self._children.items()}

    def alive(self) -> bool:
        """True while at least one child is running."""
        return any(code is None for code in self.poll().values())

    def pids(self) -> dict[str, int]:
        """Pid of every child by name (also of those that have exited)."""
        return {name: proc.pid for name, proc in self._children.items()}

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child and what it forked; see :func:`terminate_groups`. Idempotent."""
        unstopped, self._unstopped = self._unstopped, []
        try:
            terminate_groups(unstopped, timeout)
        finally:
            for log in self._logs:
                log.close()
            self._logs.clear()
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
