"""Actors that take their time, imported by test worker pools (``dramatiq workers workers
tests.support.slow_actors``) to exercise time limits with real processes."""

from __future__ import annotations

import time

import dramatiq

import workers
from workers import broker  # evalq's broker: these actors are declared on it

SLOW_QUEUE = "default"
RUNS_KEY = "evalq-test:runs"


@dramatiq.actor(broker=broker, queue_name=SLOW_QUEUE, time_limit=600)
def overrun(seconds: float, tag: str) -> None:
    """Count the run in Redis, then work (in short sleeps) for ``seconds``, past its 0.6 s limit."""
    workers.broker.client.hincrby(RUNS_KEY, tag, 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)


@dramatiq.actor(broker=broker, queue_name=SLOW_QUEUE)
def busy(seconds: float, tag: str) -> None:
    """Count the run in Redis, then work in pure Python (short sleeps) for ``seconds``; no time
    limit of its own cuts it short."""
    workers.broker.client.hincrby(RUNS_KEY, tag, 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
