"""A worker whose boot hooks are slow, as on a loaded machine: import after ``workers``
(``dramatiq workers tests.support.slow_worker_boot ...``).

It appends a middleware whose ``after_worker_boot`` takes ``BOOT_DELAY_S``; Dramatiq emits
"after" signals in reverse order, so it runs before every evalq middleware's hook. Dramatiq 2.2
emits that signal after the worker threads have started, so jobs already queued run while it
waits: what a process must have in place for its first job cannot be set up in that hook.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq import Broker
from dramatiq.middleware import Middleware

BOOT_DELAY_S = 1.0


class SlowWorkerBoot(Middleware):
    """Waits ``BOOT_DELAY_S`` in ``after_worker_boot``."""

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        time.sleep(BOOT_DELAY_S)


dramatiq.get_broker().add_middleware(SlowWorkerBoot())
