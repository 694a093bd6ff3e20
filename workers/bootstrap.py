"""Build the Dramatiq broker evalq runs on, from Settings.

The middleware list is explicit: Dramatiq's own ``Retries`` is deliberately absent, because evalq's
error-policy middleware is the only retry owner (stacked retries multiply attempts).
"""

from __future__ import annotations

import sys

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from config.policy import Policy, PolicyError, load_policy
from config.settings import Settings
from middleware.abort import AbortWatcher
from middleware.error_policy import ErrorPolicy
from middleware.heartbeat import Heartbeat
from middleware.job_history import JobHistory
from middleware.redelivery import Redelivery
from middleware.sentry import InvalidSentryDsn, SentryReporter, init_sentry
from middleware.state.broker import EvalqRedisBroker
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from middleware.state.keys import DRAMATIQ_NAMESPACE
from middleware.worker_registry import WorkerRegistry
from workers.lanes import max_ages_ms


def refuse_invalid_settings(problems: list[str]) -> None:
    """Stop the process, one line per problem, if there are any."""
    for problem in problems:
        print(f"evalq: invalid settings: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)


def load_policy_or_exit(settings: Settings) -> Policy:
    """The policy file, or stop the process with the file, the field and what is wrong."""
    try:
        return load_policy(settings.policy_file)
    except PolicyError as error:
        print(f"evalq: invalid policy file: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def init_sentry_or_exit(settings: Settings, client: redis.Redis) -> SentryReporter | None:
    """Sentry's reporter (None without a DSN), or stop the process if the DSN is invalid."""
    try:
        return init_sentry(settings, client)
    except InvalidSentryDsn as error:
        print(f"evalq: invalid settings: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def build_dead_letters(settings: Settings, client: redis.Redis) -> DeadLetters:
    """The dead-letter store, with the retention the settings ask for."""
    return DeadLetters(
        client, max_records=settings.dlq_max_records, max_age_s=settings.dlq_max_age_s
    )


def build_middleware(
    settings: Settings,
    client: redis.Redis,
    policy: Policy,
    dead_letters: DeadLetters | None = None,
) -> list[Middleware]:
    """The middleware stack, in order. ``Retries`` is not in it, on purpose, and neither is
    ``AgeLimit`` (the error policy expires old jobs into the DLQ). ``ErrorPolicy`` comes after
    everything that may refuse a job, so that it counts an attempt only once everything else let
    it start; ``AbortWatcher`` comes after it, so that it interrupts a thread only while the actor
    runs (its before hook runs last, its after hook first)."""
    history = History(client, ttl_s=settings.job_ttl_s)
    dead_letters = dead_letters or build_dead_letters(settings, client)
    return [
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        WorkerRegistry(),
        Redelivery(
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
            interval_ms=settings.redelivery_interval_ms,
        ),
        JobHistory(history),
        ErrorPolicy(
            policy=policy,
            history=history,
            dead_letters=dead_letters,
            env=settings.env,
            max_age_ms=max_ages_ms(settings),
            sentry=init_sentry_or_exit(settings, client),
        ),
        AbortWatcher(client),
        *_liveness(settings),
    ]


def _liveness(settings: Settings) -> list[Middleware]:
    """The heartbeat middleware when a liveness file is configured (Kubernetes), else none."""
    if settings.heartbeat_file is None:
        return []
    return [Heartbeat(settings.heartbeat_file, interval_s=settings.heartbeat_interval_s)]


def build_broker(
    settings: Settings, *, policy: Policy | None = None, url: str | None = None
) -> EvalqRedisBroker:
    """A Redis broker on ``url`` (default: the settings' worker URL) with evalq's middleware,
    whose consumers dead-letter malformed messages (``middleware.state.broker``)."""
    pool = redis.ConnectionPool.from_url(url or settings.worker_redis_url)
    client = redis.Redis(connection_pool=pool)
    dead_letters = build_dead_letters(settings, client)
    middleware = build_middleware(
        settings, client, policy or load_policy_or_exit(settings), dead_letters
    )
    return EvalqRedisBroker(
        dead_letters=dead_letters,
        client=client,
        middleware=middleware,
        namespace=DRAMATIQ_NAMESPACE,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
    )


def repoint(broker: RedisBroker, url: str) -> None:
    """Point an already-built broker (and everything sharing its connection pool) at ``url``.

    ``evalq`` commands start the embedded Redis after the broker was built at import time; the
    broker, its Lua scripts, the result store, history and the dead-letter store all share one
    connection pool, so swapping the pool's address before first use moves all of them at once.
    """
    pool = broker.client.connection_pool
    fresh = redis.ConnectionPool.from_url(url)
    pool.connection_class = fresh.connection_class
    pool.connection_kwargs = fresh.connection_kwargs
    pool.reset()
