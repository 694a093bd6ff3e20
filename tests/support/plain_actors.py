"""A plain actor for tests that need a job which simply runs (``dramatiq workers workers
tests.support.plain_actors``); each run appends its time (ms) to the list ``test:runs:<tag>``."""

from __future__ import annotations

import time

import dramatiq

from tests.support.dramatiq_option_actors import record_run
from workers import broker


@dramatiq.actor(broker=broker, queue_name="default")
def count_run(tag: str) -> None:
    """Record that it ran."""
    record_run(tag)


@dramatiq.actor(broker=broker, queue_name="default")
def sleep_then_count(tag: str, seconds: float) -> None:
    """Record that it started, take ``seconds``, then record that it finished."""
    record_run(f"{tag}:started")
    time.sleep(seconds)
    record_run(tag)
