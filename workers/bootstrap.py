"""Build the Dramatiq broker evalq runs on, from Settings.

The middleware list is explicit: Dramatiq's own ``Retries`` is deliberately absent, because evalq's
error-policy middleware is the only retry owner (stacked retries multiply attempts).
"""

from __future__ import annotations

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from config.settings import Settings
from middleware.job_states import JobStates
from middleware.worker_registry import WorkerRegistry

#: The Redis key namespace of Dramatiq's own queues.
DRAMATIQ_NAMESPACE = "dramatiq"


def build_middleware(settings: Settings) -> list[Middleware]:
    """The middleware stack, in order. ``Retries`` is not in it, on purpose."""
    return [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        JobStates(ttl_s=settings.job_ttl_s),
        WorkerRegistry(),
    ]


def build_broker(settings: Settings, *, url: str | None = None) -> RedisBroker:
    """A RedisBroker on ``url`` (default: the settings' worker URL) with evalq's middleware."""
    pool = redis.ConnectionPool.from_url(url or settings.worker_redis_url)
    client = redis.Redis(connection_pool=pool)
    return RedisBroker(
        client=client,
        middleware=build_middleware(settings),
        namespace=DRAMATIQ_NAMESPACE,
    )


def repoint(broker: RedisBroker, url: str) -> None:
    """Point an already-built broker (and everything sharing its connection pool) at ``url``.

    ``evalq`` commands start the embedded Redis after the broker was built at import time; the
    broker, its Lua scripts, the result store and the job states all share one connection pool,
    so swapping the pool's address before first use moves all of them at once.
    """
    pool = broker.client.connection_pool
    fresh = redis.ConnectionPool.from_url(url)
    pool.connection_class = fresh.connection_class
    pool.connection_kwargs = fresh.connection_kwargs
    pool.reset()
