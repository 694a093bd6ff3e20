"""Lanes: one queue and one worker pool each, so bulk work never starves interactive work."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from workers.actors import BATCH_QUEUE, DEFAULT_QUEUE, LIVE_QUEUE


@dataclass(frozen=True)
class Lane:
    """A queue and the size of the worker pool that consumes it."""

    name: str
    queue: str
    processes: int
    threads: int

    def worker_argv(self, *, shutdown_timeout_ms: int = 10_000) -> list[str]:
        """The ``dramatiq workers`` command line of this lane's pool."""
        return [
            sys.executable,
            "-m",
            "dramatiq",
            "workers",
            "--processes",
            str(self.processes),
            "--threads",
            str(self.threads),
            "--queues",
            self.queue,
            "--worker-shutdown-timeout",
            str(shutdown_timeout_ms),
        ]


LANES: tuple[Lane, ...] = (
    Lane("live", LIVE_QUEUE, processes=1, threads=4),
    Lane("batch", BATCH_QUEUE, processes=1, threads=8),
    Lane("default", DEFAULT_QUEUE, processes=1, threads=2),
)
