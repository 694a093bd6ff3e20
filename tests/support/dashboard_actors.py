"""Actors for the dashboard's browser tests, imported by test worker pools (``dramatiq workers
workers tests.support.dashboard_actors``): one that runs until aborted, one that fails with a
chosen category, or asks for a retry, until the test marks its tag fixed."""

from __future__ import annotations

import time

import dramatiq

from middleware.errors import NonRetryable
from workers import broker  # evalq's broker: these actors are declared on it

QUEUE = "default"
#: Set of tags whose jobs succeed from now on.
FIXED_KEY = "evalq-test:fixed"


@dramatiq.actor(broker=broker, queue_name=QUEUE, time_limit=600_000)
def linger(seconds: float) -> None:
    """Work in pure Python (short sleeps) for ``seconds``, so an abort can interrupt it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)


@dramatiq.actor(broker=broker, queue_name=QUEUE)
def fail_until_fixed(tag: str, category: str) -> None:
    """Fail with ``category`` (dead-lettered at once) until ``tag`` is in ``FIXED_KEY``; the
    message carries markup, as a provider's error can."""
    if not broker.client.sismember(FIXED_KEY, tag):
        raise NonRetryable(
            f"provider refused <b>{tag}</b><script>alert(1)</script>", category=category
        )


@dramatiq.actor(broker=broker, queue_name=QUEUE)
def retry_until_fixed(tag: str, delay_ms: int) -> None:
    """Ask for a retry in ``delay_ms`` until ``tag`` is in ``FIXED_KEY``."""
    if not broker.client.sismember(FIXED_KEY, tag):
        raise dramatiq.Retry(delay=delay_ms)
