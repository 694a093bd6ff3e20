"""Writes that make a job wait until a replica has them, so that a failover cannot undo them.

Redis replicates after it answers. A primary killed between answering a submission and sending
it on to its replica leaves the producer holding a job id that the promoted replica never heard
of: the job is gone, and so is its idempotency key. That window is short but real (about one
kill in thirty lost the last few acknowledged writes, primary and replica on one machine).

``ReplicaWait`` closes it for the writes that create jobs (``Evalq`` submissions, an actor's
``send()``): their round trip ends with ``WAIT 1 <timeout>``, so the call returns once a replica
has acknowledged them. It waits only where there is a replica to wait for: ``ROLE`` says how
many replicas the primary has online, asked once when first needed and then at most once a
second inside a write's own round trip. A primary without replicas (a single node; a new primary
right after a failover, before the old one comes back) costs nothing: no ``WAIT``, and one
``ROLE`` a second. Other writes do not wait: a settlement, a fetch or a history event lost in a
failover makes a job run again or a timeline shorter, never a job disappear
(``docs/reliability.md``).

A replica that has not acknowledged within the timeout (it is lagging, or just went away) does
not fail the write, which is on the primary: the write returns, a warning says it was not
confirmed, and the next round trip asks ``ROLE`` again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis

logger = logging.getLogger("evalq.replication")

#: How often the primary's online replicas are counted again, in seconds.
ROLE_EVERY_S = 1.0
#: Least time between two warnings of writes not confirmed by a replica, in seconds.
WARN_EVERY_S = 10.0


class ReplicaWait:
    """What to send after a job-creating write so that it returns once a replica has it.

    Parameters:
      client(redis.Redis): The client the writes go through (its pool's primary is the one
        counted; a new pool is counted anew).
      timeout_ms(int): How long a write waits for a replica, in milliseconds; 0 never waits.
    """

    def __init__(self, client: redis.Redis, timeout_ms: int) -> None:
        self.client = client
        self.timeout_ms = timeout_ms
        self._pool: Any = None
        self._replicas: int | None = None  # online replicas of the primary; None: not known
        self._wait_ms = timeout_ms
        self._counted_at = 0.0
        self._warned_at = -WARN_EVERY_S

    def tail(self) -> list[tuple[Any, ...]]:
        """The commands to send right after the writes, in the same round trip: ``WAIT`` when
        the primary has a replica online, ``ROLE`` when the count is due again. Counts the
        replicas first (one round trip) when they are not known yet."""
        if self.timeout_ms <= 0:
            return []
        if self._replicas is None or self.client.connection_pool is not self._pool:
            self._pool = self.client.connection_pool
            self._wait_ms = _within_socket_timeout(self.timeout_ms, self._pool)
            try:
                role = self.client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            except redis.ResponseError as refused:  # an ACL; Redis away is the caller's
                role = refused
            self._count(role)
        commands: list[tuple[Any, ...]] = []
        if self._replicas:
            commands.append(("WAIT", 1, self._wait_ms))
        if time.monotonic() - self._counted_at >= ROLE_EVERY_S:
            commands.append(("ROLE",))
        return commands

    def check(self, tail: Sequence[tuple[Any, ...]], replies: Sequence[Any]) -> None:
        """Read the replies to ``tail`` (an error reply is its exception object)."""
        for command, reply in zip(tail, replies, strict=True):
            if command[0] == "ROLE":
                self._count(reply)
            elif isinstance(reply, Exception) or int(reply) < 1:
                self._unconfirmed(reply)

    def forget(self) -> None:
        """The round trip failed (Redis away, perhaps a failover): count the replicas again
        before the next write."""
        self._replicas = None

    def _count(self, reply: Any) -> None:
        self._counted_at = time.monotonic()
        if isinstance(reply, Exception):
            # An ACL without ROLE: the guarantee cannot be kept, and waiting blind would stall
            # every write of a primary without replicas.
            if self._replicas != 0:
                logger.warning("Redis refused ROLE (%s): job-creating writes will not wait for a "
                               "replica; allow ROLE for evalq's user", reply)  # fmt: skip
            self._replicas = 0
            return
        role, *rest = reply
        self._replicas = len(rest[1]) if _text(role) == "master" and len(rest) > 1 else 0

    def _unconfirmed(self, reply: Any) -> None:
        # The replica may be gone: count again at the next write.
        self._counted_at = 0.0
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        why = reply if isinstance(reply, Exception) else f"none within {self._wait_ms} ms"
        logger.warning("A job-creating write was not confirmed by a replica (%s): it is on the "
                       "primary only until a replica catches up", why)  # fmt: skip


def _within_socket_timeout(timeout_ms: int, pool: Any) -> int:
    """``timeout_ms``, shortened to end well within the connections' read timeout when they
    have one (a ``socket_timeout`` in the Redis URL): a ``WAIT`` outliving it would fail the
    write as a timeout, and each resend would wait again."""
    socket_timeout = getattr(pool, "connection_kwargs", {}).get("socket_timeout")
    if not socket_timeout:
        return timeout_ms
    return max(1, min(timeout_ms, int(socket_timeout * 1000 * 0.8)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
