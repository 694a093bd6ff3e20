"""The actors of the throughput benchmark, on either stack: ``dramatiq bench.throughput_actors``.

``BENCH_STACK=bare`` builds a plain Dramatiq ``RedisBroker`` with Dramatiq's default middleware on
``BENCH_REDIS_URL`` (plus ``CurrentMessage`` with ``BENCH_CURRENT_MESSAGE=1``, which the
retry-once actor needs to tell its first attempt from its retry); ``BENCH_STACK=libs`` is the same
with the libraries evalq's worker must load besides Dramatiq and redis-py (pydantic and
pydantic-settings, sentry-sdk initialised to ``BENCH_SENTRY_DSN`` as evalq initialises it), the
baseline of the memory row; ``BENCH_STACK=evalq`` imports ``workers``, evalq's full stack as
``dramatiq workers`` builds it. Each declares the same four actors on the queue
``bench.<stack>``, so the stacks' workers can wait side by side on one Redis without taking
each other's jobs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

STACK = os.environ.get("BENCH_STACK", "evalq")
#: ``bench.ab`` runs two evalq trees side by side, each on a queue of its own.
QUEUE = os.environ.get("BENCH_QUEUE") or f"bench.{STACK}"

#: Markers a retried message carries: Dramatiq's ``Retries`` and evalq's error policy.
_RETRY_OPTIONS = ("retries", "evalq_first_failure_at")


class TransientBenchError(Exception):
    """Fails an attempt that deserves a retry (evalq: a rule maps it to provider_unavailable)."""


class PermanentBenchError(Exception):
    """Fails a job for good (evalq: a rule maps it to invalid_request, a dead-letter category)."""


def _bare_broker() -> RedisBroker:
    broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
    if os.environ.get("BENCH_CURRENT_MESSAGE") == "1":
        broker.add_middleware(CurrentMessage())
    return broker


def _load_evalq_libraries() -> None:
    """What evalq's worker loads besides Dramatiq and redis-py, none of evalq's own code: a
    settings class read from the environment, and sentry-sdk as evalq initialises it."""
    import logging

    import pydantic  # noqa: F401
    import pydantic_settings
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    class Settings(pydantic_settings.BaseSettings):
        redis_url: str = ""

    Settings()
    sentry_sdk.init(
        dsn=os.environ["BENCH_SENTRY_DSN"],
        include_local_variables=False,
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
    )


if STACK in ("bare", "libs"):
    if STACK == "libs":
        _load_evalq_libraries()
    dramatiq.set_broker(_bare_broker())
    # Dramatiq's Retries: one retry after 1-10 ms; none for the dead-letter actor.
    _retry_once: dict[str, Any] = {"max_retries": 1, "min_backoff": 1, "max_backoff": 10}
    _no_retry: dict[str, Any] = {"max_retries": 0}
else:
    from workers import broker  # noqa: F401  (builds evalq's broker and sets it as Dramatiq's)

    _retry_once, _no_retry = {}, {}


@dramatiq.actor(queue_name=QUEUE)
def noop() -> None:
    """Do nothing: what is left is the stack's own cost."""


@dramatiq.actor(queue_name=QUEUE)
def sleep_10ms() -> None:
    """Wait 10 ms without holding the GIL, like a job waiting on a provider."""
    time.sleep(0.01)


@dramatiq.actor(queue_name=QUEUE, **_retry_once)
def fail_once() -> None:
    """Fail the first attempt, succeed on the retry."""
    message = CurrentMessage.get_current_message()
    if message is None or not any(name in message.options for name in _RETRY_OPTIONS):
        raise TransientBenchError("bench: first attempt fails")


@dramatiq.actor(queue_name=QUEUE, **_no_retry)
def dead_letter() -> None:
    """Fail with a permanent error: the job goes to the dead letters at its first attempt."""
    raise PermanentBenchError("bench: this job can never succeed")
