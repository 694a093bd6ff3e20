"""Job history in workers: runs the history flusher."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import Broker

from middleware.state.jobs import History


class JobHistory(dramatiq.Middleware):
    """Runs the history flusher of a worker process, from its boot to its shutdown.

    A new job's ``queued`` record is written by the broker's enqueue script
    (``EvalqRedisBroker.enqueue``); retries, redrives and the other transitions by the error
    policy and the dead-letter store.

    Parameters:
      history(History): Where states are written.
    """

    def __init__(self, history: History) -> None:
        self.history = history

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # Before the first job: Dramatiq 2.2 starts worker threads before after_worker_boot.
        self.history.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self.history.stop()
