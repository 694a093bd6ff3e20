"""Counting the round trips a client makes to Redis: one packed write is one round trip."""

from __future__ import annotations

import redis


class RoundTrips:
    """Counts what connections of ``client``'s connection class send, until ``close()``; the
    packed writes are kept in ``sent``."""

    def __init__(self, client: redis.Redis) -> None:
        self.sent: list[bytes] = []
        connection_class = client.connection_pool.connection_class
        self._class, self._original = connection_class, connection_class.send_packed_command
        counter = self

        def counting(connection, command, check_health=True):  # type: ignore[no-untyped-def]
            counter.sent.append(command)
            return counter._original(connection, command, check_health)

        connection_class.send_packed_command = counting

    @property
    def count(self) -> int:
        return len(self.sent)

    def close(self) -> None:
        self._class.send_packed_command = self._original
