"""One connection of a client's pool, kept by one sender at a time (``GroupCommit``).

redis-py's per-command path (pool checkout and checks, retry wrapper, metrics) cost a worker
about as much CPU again as a round trip itself; a group commit writes its packed commands on a
connection it keeps and reads the replies back, and readies that connection as the pool readies
one it hands out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import redis


class HeldConnection:
    """One connection of ``client``'s pool, kept for one sender at a time: taken when first
    needed, again in a forked child and after the client was given another pool
    (``workers.bootstrap.repoint``); reconnected by redis-py after an error."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pool: redis.ConnectionPool | None = None
        self._connection: Any = None
        self._pid = 0

    def replies(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The reply to each command, sent in one write: an error reply is its ``ResponseError``;
        any other failure (the connection, an interrupt) drops the connection and is raised."""
        pool = self._client.connection_pool
        if self._pool is not pool or self._pid != os.getpid():
            # A parent's connection is left alone: redis-py closes only its own process's. An
            # old pool's was closed by whoever replaced the pool.
            self._connection, self._pid, self._pool = pool.get_connection(), os.getpid(), pool
        connection = self._connection
        try:
            # Readied as the pool readies a connection it hands out. connect() is a no-op when
            # connected; reconnecting, a Sentinel connection asks the sentinels for the primary
            # (send_packed_command alone would reconnect to the address it had).
            connection.connect()
            if self._stale(pool, connection):
                connection.disconnect()
                connection.connect()
            connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException:
            # Replies may be left unread: the next round trip starts on a new connection.
            connection.disconnect()
            raise

    @staticmethod
    def _stale(pool: redis.ConnectionPool, connection: Any) -> bool:
        """What the pool checks of a connection it hands out or takes back: whether it has a
        reply nobody asked for, Redis closed it (a restart while the process was idle), or it
        is not to the node the pool now knows as the primary (a Sentinel pool learns of a
        failover when any of its connections reconnects)."""
        if not pool.owns_connection(connection):
            return True
        try:
            return bool(connection.can_read())
        except (redis.ConnectionError, OSError):
            return True
