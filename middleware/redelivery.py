"""Redeliver a dead worker's jobs promptly, at the head of their queues.

Dramatiq puts a dead worker's unacked messages back only when a broker command happens to run
its maintenance (``maintenance_chance``), and at the tail of the queue: after a kill, a job
waited seconds to minutes, then behind the whole backlog. ``Redelivery`` runs one small script
from every worker process on a fixed interval: it refreshes the process's heartbeat and moves
the messages held by workers silent for longer than the heartbeat timeout back to the head of
their queues. A dead worker's jobs therefore run again within the heartbeat timeout plus one
interval, first in line. One round trip per interval per process, none per job.

The same pass returns what this worker holds in Redis itself. A delivery there that the process
does not hold in memory (``EvalqRedisBroker.held_deliveries``) is an orphan: a fetch whose reply
was lost with the connection, or a settlement that a failover took back (the new primary never
had it). Its worker is alive, so nothing else would put it back: its job would stay ``queued``
or ``running`` until the process ended. An orphan seen for ``ORPHAN_AGE_S`` goes back to the
head of its queue (``lua/reclaim.lua``); that costs a round trip only when there is one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Broker

from middleware.state import keys
from middleware.state.broker import EvalqRedisBroker
from middleware.state.scripts import scripts_for

logger = logging.getLogger("evalq.redelivery")

#: How long a delivery held by this worker in Redis but not in its memory waits before it is put
#: back, in seconds: far longer than a fetched batch takes to reach the consumer's memory.
ORPHAN_AGE_S = 5.0


class Redelivery(dramatiq.Middleware):
    """Refreshes this worker's heartbeat and redelivers dead workers' messages, every interval.

    Parameters:
      heartbeat_timeout_ms(int): A worker silent this long is dead (the broker's own setting).
      interval_ms(int): How often each worker process looks, in milliseconds (default 1000).
    """

    def __init__(self, *, heartbeat_timeout_ms: int, interval_ms: int = 1000) -> None:
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.interval_ms = interval_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Before the consumers start (Dramatiq 2.2 starts them before after_worker_boot).
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(broker,), name="evalq-redelivery", daemon=True
        )
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, broker: Broker) -> None:
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        scripts = scripts_for(client)
        worker_id: str = broker.broker_id  # type: ignore[attr-defined]
        # Only evalq's consumer keeps track of the deliveries the process holds.
        orphans = None
        if isinstance(broker, EvalqRedisBroker) and broker.dead_letters is not None:
            orphans = Orphans(broker)
        while not self._stop.wait(self.interval_ms / 1000):
            try:
                moved, own = redeliver(
                    scripts.redeliver,
                    worker_id=worker_id,
                    queues=sorted(
                        {*broker.get_declared_queues(), *broker.get_declared_delay_queues()}
                    ),
                    timeout_ms=self.heartbeat_timeout_ms,
                )
                lost = orphans.confirmed(own, time.monotonic()) if orphans is not None else []
                reclaimed = reclaim(scripts.reclaim, worker_id=worker_id, deliveries=lost)
            except redis.RedisError:
                logger.debug("redelivery pass skipped: Redis unavailable", exc_info=True)
                continue
            if moved:
                logger.warning("%d message(s) of dead workers put back at the head of their "
                               "queues", moved)  # fmt: skip
            if reclaimed:
                logger.warning("%d message(s) held by this worker in Redis but not in its memory "
                               "(a lost reply or settlement) put back at the head of their "
                               "queues", reclaimed)  # fmt: skip


class Orphans:
    """Deliveries in this worker's acks sets in Redis that the process does not hold in memory:
    the messages of a fetch whose reply never arrived, or of a settlement a failover took back.
    Nothing else would ever put them back while the worker lives. One is confirmed once it has
    been seen so for ``ORPHAN_AGE_S``, far longer than a fetched batch takes to reach memory."""

    def __init__(self, broker: EvalqRedisBroker) -> None:
        self.broker = broker
        self._since: dict[tuple[str, str], float] = {}

    def confirmed(self, own: list[tuple[str, str]], now: float) -> list[tuple[str, str]]:
        """The orphans among ``own`` (this worker's held deliveries in Redis, as ``(queue,
        delivery id)``) seen at ``now`` (``time.monotonic``)."""
        held = self.broker.held_deliveries
        since = {
            pair: self._since.get(pair, now) for pair in own if pair[1] not in held
        }  # fmt: skip
        self._since = since
        aged = [pair for pair, first in since.items() if now - first >= ORPHAN_AGE_S]
        return [pair for pair in aged if not self.broker.fetched_not_taken(pair[1])]


def redeliver(
    script: Any, *, worker_id: str, queues: list[str], timeout_ms: int
) -> tuple[int, list[tuple[str, str]]]:
    """One pass of the redelivery script: how many messages it put back, and the deliveries
    this worker holds in Redis, as ``(queue, delivery id)``."""
    now_ms = int(time.time() * 1000)
    args = [keys.DRAMATIQ_NAMESPACE, now_ms, timeout_ms, worker_id, *queues]
    moved, own = script(keys=[keys.heartbeats_key()], args=args)
    pairs = [(keys.text(own[i]), keys.text(own[i + 1])) for i in range(0, len(own), 2)]
    return int(moved), pairs


def reclaim(script: Any, *, worker_id: str, deliveries: list[tuple[str, str]]) -> int:
    """Put ``deliveries`` (``(queue, delivery id)``, held by this worker in Redis only) back at
    the head of their queues; how many were."""
    if not deliveries:
        return 0
    args = [keys.DRAMATIQ_NAMESPACE, worker_id, *(v for pair in deliveries for v in pair)]
    return int(script(keys=[], args=args))
