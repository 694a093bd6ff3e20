"""How evalq connects to Redis: one factory, from a URL, for every process and every part of it.

A single node's URL (``redis://``, ``rediss://``, ``unix://``) gives redis-py's own pool. A
Sentinel URL (``config.redis_url``) gives a ``SentinelConnectionPool``: each new connection asks
every sentinel which node is the primary and believes the newest view (``NewestViewSentinel``), a
connection to a node that is no longer the primary fails with ``ConnectionError`` whether Redis
refused a plain command or a Lua script's write (``FailoverConnection``), and idle connections are
dropped as soon as one connection sees a new primary. The broker, its Lua scripts, the stores,
the abort channel, the CLI, the client and the dashboard all reach Redis through a pool made
here, so a failover moves them together; what each does while it happens (retry, wait, reconnect)
is its own business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.connection import SSLConnection, parse_url
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from config.redis_url import SentinelAddress, is_sentinel_url, parse_sentinel_url
from config.settings import Settings

#: Redis errors that pass: a node restarting, a failover under way, a primary just demoted (a
#: Sentinel pool's connections report its READONLY replies as ``ConnectionError``; a plain pool's
#: as ``ReadOnlyError``), the sentinels not agreeing on a primary yet (``MasterNotFoundError``, a
#: ``ConnectionError``).
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
             redis.exceptions.BusyLoadingError)  # fmt: skip

_T = TypeVar("_T")

#: How long a sentinel may take to connect and to answer, in seconds: a sentinel that is down
#: must not stall the search for one that is up.
SENTINEL_TIMEOUT_S = 1.0


def redis_pool(url: str, settings: Settings | None = None, **options: Any) -> redis.ConnectionPool:
    """The connection pool of the Redis at ``url``; ``settings`` give the sentinels' password and
    TLS (``EVALQ_REDIS_SENTINEL_*``); ``options`` are redis-py connection options that override
    the URL's. Never connects."""
    if not is_sentinel_url(url):
        return redis.ConnectionPool.from_url(url, **options)
    address = parse_sentinel_url(url)
    node = {**_node_options(address), **options}
    sentinel_options = _sentinel_options(node, settings)
    manager = NewestViewSentinel(list(address.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    tls = node.pop("ssl", False)
    node["connection_class"] = FailoverSSLConnection if tls else FailoverConnection
    return SentinelConnectionPool(address.master, manager, **node)  # type: ignore[no-untyped-call]


class NewestViewSentinel(Sentinel):
    """Sentinels asked for the primary all at once, the newest view winning.

    redis-py believes the first sentinel that names a primary. Right after a failover, a sentinel
    that has not heard of it yet (sentinels spread a new configuration every 2 s) still names the
    old primary, and if that node is back up already (restarted empty, not yet turned into a
    replica), writes would go to it and be lost when it is demoted. Each sentinel's view carries
    the configuration epoch it was made in: the highest one is the current primary. This costs
    one round trip per sentinel, only when a connection is opened.
    """

    def discover_master(self, service_name: str) -> tuple[str, int]:
        views: list[dict[str, Any]] = []
        errors: list[str] = []
        for sentinel in self.sentinels:
            try:
                state = sentinel.sentinel_masters().get(service_name)  # type: ignore[no-untyped-call]
            except (redis.ConnectionError, redis.TimeoutError) as error:
                errors.append(f"{sentinel}: {error}")
                continue
            if state and self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                views.append(state)
        if not views:
            detail = f": {', '.join(errors)}" if errors else ""
            raise MasterNotFoundError(f"no sentinel names a primary for {service_name!r}{detail}")
        newest = max(views, key=lambda state: int(state.get("config-epoch", 0)))
        return str(newest["ip"]), int(newest["port"])


#: How Redis before 7 reports a script's write refused by a replica: inside a script error.
_READONLY_IN_SCRIPT = "READONLY You can't write against a read only replica"


class FailoverConnection(SentinelManagedConnection):
    """A connection to the primary that treats every sign of a demoted primary alike.

    redis-py turns a plain ``READONLY`` reply into ``ConnectionError`` (the connection then asks
    the sentinels again); Redis 6 wraps the same refusal of a Lua script's write in a script
    error (``ERR Error running script ... READONLY ...``), which is turned into one here too, so
    that evalq's scripts (submit, settle, dead-letter) are retried on the new primary instead of
    failing for good."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ResponseError as error:
            if not (self.connection_pool.is_master and _READONLY_IN_SCRIPT in str(error)):
                raise
            self.disconnect()  # type: ignore[no-untyped-call]
            raise redis.ConnectionError("the primary was demoted; asking the sentinels") from error


class FailoverSSLConnection(FailoverConnection, SSLConnection):
    """``FailoverConnection`` over TLS."""


def redis_client(url: str, settings: Settings | None = None, **options: Any) -> redis.Redis:
    """A client on ``redis_pool(url, settings, **options)``, closing that pool when closed."""
    client = redis.Redis(connection_pool=redis_pool(url, settings, **options))
    client.auto_close_connection_pool = True
    return client


def sibling_pool(pool: redis.ConnectionPool, **options: Any) -> redis.ConnectionPool:
    """A new pool to the same Redis as ``pool`` (the same sentinels and master, for a Sentinel
    pool), with ``options`` overriding its connection options: for a watcher whose commands must
    not wait behind the shared pool's."""
    kwargs = {**pool.connection_kwargs, **options}
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the new pool's own proxy goes there
        return SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name,
            pool.sentinel_manager,
            connection_class=pool.connection_class,
            is_master=pool.is_master,
            **kwargs,
        )
    return type(pool)(connection_class=pool.connection_class, **kwargs)


def uses_sentinel(pool: redis.ConnectionPool) -> bool:
    """Whether ``pool`` finds its primary through Sentinel."""
    return isinstance(pool, SentinelConnectionPool)


def _node_options(address: SentinelAddress) -> dict[str, Any]:
    """The data nodes' connection options: credentials, database, TLS and the URL's query,
    parsed by redis-py's rules for its own URLs (the host is the sentinels' to give)."""
    scheme = "rediss" if address.tls else "redis"
    query = f"?{address.query}" if address.query else ""
    options: dict[str, Any] = parse_url(  # type: ignore[no-untyped-call]
        f"{scheme}://sentinel-managed/{address.db}{query}"
    )
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    if address.username is not None:
        options["username"] = address.username
    if address.password is not None:
        options["password"] = address.password
    return options


def _sentinel_options(node: dict[str, Any], settings: Settings | None) -> dict[str, Any]:
    """Connection options of the sentinels: short timeouts, their own password, and TLS with the
    data nodes' ``ssl_*`` options when ``EVALQ_REDIS_SENTINEL_TLS`` asks for it."""
    options: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        "socket_timeout": SENTINEL_TIMEOUT_S,
    }
    if settings is None:
        return options
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    if settings.redis_sentinel_tls:
        options["ssl"] = True
        options.update({k: v for k, v in node.items() if k.startswith("ssl_")})
    return options


def while_redis_away(operation: Callable[[], _T], *, patience_s: float) -> _T:
    """Run ``operation``, again and again while it fails with a ``TRANSIENT`` error, for up to
    ``patience_s`` seconds; then its last error is raised. The operation must be idempotent: it
    is the same call each time (same ids, same keys), never a new one."""
    deadline = time.monotonic() + patience_s
    delay = 0.05
    while True:
        try:
            return operation()
        except TRANSIENT:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
