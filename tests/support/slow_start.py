"""A worker whose first count of a job's attempt waits past the job's time limit, as it does when
Redis is away for longer (``dramatiq workers workers tests.support.slow_start``).

``record_once`` records each run of a job tagged ``slow:`` (limit 1 s). In this worker the error
policy's ``History.start_attempt`` first waits, in the short sleeps of a settlement retrying
against an absent Redis, for up to 5 s on the first start of each such job: Dramatiq's
``TimeLimit``, armed before the attempt is counted, interrupts it there.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from middleware.error_policy import ErrorPolicy
from tests.support.dramatiq_option_actors import record_run
from workers import broker

#: Set (per tag) once the slow start has been waited out, so later starts go through at once.
WAITED_KEY = "test:slow-start:waited"


@dramatiq.actor(broker=broker, queue_name="default", time_limit=1_000)
def record_once(tag: str) -> None:
    """Record one run of the job tagged ``tag``."""
    record_run(tag)


def _slow_first_start(history: Any) -> None:
    real = history.start_attempt

    def start_attempt(job_id: str, **fields: Any) -> Any:
        if broker.client.hsetnx(WAITED_KEY, job_id, 1):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the time limit lands in one of these sleeps
                time.sleep(0.1)
        return real(job_id, **fields)

    history.start_attempt = start_attempt


for _middleware in broker.middleware:
    if isinstance(_middleware, ErrorPolicy):
        _slow_first_start(_middleware.history)
