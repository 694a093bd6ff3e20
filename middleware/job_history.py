"""Job history in workers: records newly enqueued jobs and runs the history flusher."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Broker
from dramatiq.message import Message

from middleware.state.jobs import History

logger = logging.getLogger(__name__)


class JobHistory(dramatiq.Middleware):
    """Records newly enqueued jobs as ``queued`` and runs the history flusher in workers.

    Retries, redrives and the other transitions are written by the error policy and the
    dead-letter store; this middleware only sees a job enter the broker for the first time.

    Parameters:
      history(History): Where states are written.
    """

    def __init__(self, history: History) -> None:
        self.history = history

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        # A message that already carries evalq options is a retry or a delayed message coming
        # due: its state was written when it was scheduled.
        if any(name.startswith("evalq_") for name in message.options):
            return
        try:
            self.history.record_enqueued(
                message.message_id, queue=message.queue_name, actor=message.actor_name
            )
        except redis.RedisError:
            logger.warning("Could not record job %s as queued.", message.message_id, exc_info=True)

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Before the first job: Dramatiq 2.2 starts worker threads before after_worker_boot.
        self.history.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self.history.stop()
