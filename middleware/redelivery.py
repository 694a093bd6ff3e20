"""Redeliver a dead worker's jobs promptly, at the head of their queues.

Dramatiq puts a dead worker's unacked messages back only when a broker command happens to run
its maintenance (``maintenance_chance``), and at the tail of the queue: after a kill, a job
waited seconds to minutes, then behind the whole backlog. ``Redelivery`` runs one small script
from every worker process on a fixed interval: it refreshes the process's heartbeat and moves
the messages held by workers silent for longer than the heartbeat timeout back to the head of
their queues. A dead worker's jobs therefore run again within the heartbeat timeout plus one
interval, first in line. One round trip per interval per process, none per job.
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
from middleware.state.scripts import scripts_for

logger = logging.getLogger("evalq.redelivery")


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
        script = scripts_for(client).redeliver
        while not self._stop.wait(self.interval_ms / 1000):
            try:
                moved = redeliver(
                    script,
                    worker_id=broker.broker_id,  # type: ignore[attr-defined]
                    queues=sorted(
                        {*broker.get_declared_queues(), *broker.get_declared_delay_queues()}
                    ),
                    timeout_ms=self.heartbeat_timeout_ms,
                )
            except redis.RedisError:
                logger.debug("redelivery pass skipped: Redis unavailable", exc_info=True)
                continue
            if moved:
                logger.warning("%d message(s) of dead workers put back at the head of their "
                               "queues", moved)  # fmt: skip


def redeliver(script: Any, *, worker_id: str, queues: list[str], timeout_ms: int) -> int:
    """One pass of the redelivery script; returns how many messages it put back."""
    now_ms = int(time.time() * 1000)
    args = [keys.DRAMATIQ_NAMESPACE, now_ms, timeout_ms, worker_id, *queues]
    return int(script(keys=[keys.heartbeats_key()], args=args))
