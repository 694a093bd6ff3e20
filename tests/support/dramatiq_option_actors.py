"""Actors written the way Dramatiq teaches, imported by test worker pools (``dramatiq workers
workers tests.support.dramatiq_option_actors``) to prove evalq honours Dramatiq's retry options.

Each run appends its time (ms) to the Redis list ``test:runs:<tag>``: what a test counts.
"""

from __future__ import annotations

import time

import dramatiq

import workers
from middleware.errors import ProviderUnavailable
from workers import broker

OPTIONS_QUEUE = "default"


def record_run(tag: str) -> int:
    """Record one run of the job tagged ``tag``; returns how many runs it has had."""
    client = workers.broker.client
    return int(client.rpush(f"test:runs:{tag}", int(time.time() * 1000)))


def never_retry(retries: int, exception: BaseException) -> bool:
    """A ``retry_when`` that declines every retry."""
    return False


@dramatiq.actor(broker=broker, queue_name=OPTIONS_QUEUE, max_retries=1)
def flaky_with_one_retry(tag: str) -> None:
    """Fail with a retryable category every time; Dramatiq's max_retries=1 allows one retry."""
    record_run(tag)
    raise ProviderUnavailable(f"upstream 503 for {tag}")


@dramatiq.actor(broker=broker, queue_name=OPTIONS_QUEUE, max_retries=3)
def flaky_with_three_retries(tag: str) -> None:
    """Fail with a retryable category every time; its message options may say otherwise."""
    record_run(tag)
    raise ProviderUnavailable(f"upstream 503 for {tag}")


@dramatiq.actor(broker=broker, queue_name=OPTIONS_QUEUE, throws=(KeyError,))
def throws_key_error(tag: str) -> None:
    """Fail with an expected exception."""
    record_run(tag)
    raise KeyError(f"no row for {tag}")


@dramatiq.actor(broker=broker, queue_name=OPTIONS_QUEUE, retry_when=never_retry)
def declined_by_retry_when(tag: str) -> None:
    """Fail with a retryable category; its retry_when declines."""
    record_run(tag)
    raise ProviderUnavailable(f"upstream 503 for {tag}")


@dramatiq.actor(broker=broker, queue_name=OPTIONS_QUEUE)
def asks_to_retry(tag: str, delay_ms: int) -> None:
    """Ask to run again after ``delay_ms`` the first time; succeed the second time."""
    if record_run(tag) == 1:
        raise dramatiq.Retry(f"not ready yet: {tag}", delay=delay_ms)
