"""One connection of a client's pool, kept by one sender at a time (``GroupCommit``).

redis-py's per-command path (pool checkout and checks, retry wrapper, metrics) cost a worker
about as much CPU again as a round trip itself; a group commit writes its packed commands on a
connection it keeps and reads the replies back, and readies that connection as the pool readies
one it hands out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import redis

#: How long a held connection whose callers send a failed call again sits unused before its
#: next round trip first asks the socket whether Redis closed it, in seconds. In use, it learns
#: of that at its next round trip, whose write never reaches Redis, and the call is sent again
#: (``settle``, the poster). Asked on every round trip, the check cost a busy worker 7 % of its
#: CPU per job (a non-blocking read that gives up the GIL, two socket mode switches).
STALE_AFTER_IDLE_S = 1.0


class HeldConnection:
    """One connection of ``client``'s pool, kept for one sender at a time: taken when first
    needed, again in a forked child and after the client was given another pool
    (``workers.bootstrap.repoint``); reconnected by redis-py after an error.

    Parameters:
      client(redis.Redis): Whose pool the connection is taken from.
      check_after_idle_s(float): Before a round trip, the connection is checked as the pool
        checks one it hands out when it has been unused this long; 0, the default, checks it
        every time (for callers that do not send a failed call again).
    """

    def __init__(self, client: redis.Redis, *, check_after_idle_s: float = 0.0) -> None:
        self._client = client
        self._check_after_idle_s = check_after_idle_s
        self._pool: redis.ConnectionPool | None = None
        self._connection: Any = None
        self._pid = 0
        self._used_at = float("-inf")

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
            used_at, self._used_at = self._used_at, time.monotonic()
            idle = self._used_at - used_at >= self._check_after_idle_s
            if not pool.owns_connection(connection) or (idle and self._closed(connection)):
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
    def _closed(connection: Any) -> bool:
        """What the pool checks of a connection it hands out, besides whether it owns it (a
        Sentinel pool disowns a connection to a node that is no longer the primary): whether
        it has a reply nobody asked for, or Redis closed it (a restart or an idle timeout
        while the process was idle)."""
        try:
            return bool(connection.can_read())
        except (redis.ConnectionError, OSError):
            return True
