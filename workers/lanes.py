"""Lanes: one queue and one worker pool each, so bulk work never starves interactive work."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final, Literal, get_args

from config.settings import Settings

LIVE_QUEUE = "evaluations.live"
BATCH_QUEUE = "evaluations.batch"
DEFAULT_QUEUE = "default"
QUEUES = (LIVE_QUEUE, BATCH_QUEUE, DEFAULT_QUEUE)
LANE_QUEUES = {"live": LIVE_QUEUE, "batch": BATCH_QUEUE, "default": DEFAULT_QUEUE}
#: The lanes evaluations are submitted to (``default`` runs everything else).
SubmitLane = Literal["live", "batch"]
SUBMIT_LANES: Final[tuple[str, ...]] = get_args(SubmitLane)


@dataclass(frozen=True)
class Lane:
    """A queue, the size of the worker pool that consumes it, and how old its jobs may get."""

    name: str
    queue: str
    processes: int
    threads: int
    max_age_s: float

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


def lanes(settings: Settings) -> tuple[Lane, ...]:
    """Every lane, sized from settings (``EVALQ_LIVE_THREADS``, ``EVALQ_BATCH_MAX_AGE_S``, ...)."""
    return tuple(Lane(name, queue, *settings.lane(name)) for name, queue in LANE_QUEUES.items())


def max_ages_ms(settings: Settings) -> dict[str, int]:
    """Per queue, the age (ms since first enqueued) beyond which a job is expired, not run."""
    return {lane.queue: int(lane.max_age_s * 1000) for lane in lanes(settings) if lane.max_age_s}
