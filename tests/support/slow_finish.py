"""A worker whose first write of a job's success waits past the job's time limit, as it does when
Redis is away for longer (``dramatiq workers workers tests.support.slow_finish``).

``finish_slowly`` records each run of its job (limit 1 s) and returns at once. In this worker
the error policy's ``Outcomes.succeed`` first waits, in the short sleeps of a settlement retrying
against an absent Redis, for 3 s on the first success of each job.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from middleware.error_policy import ErrorPolicy
from tests.support.dramatiq_option_actors import record_run
from workers import broker

#: Set (per job) once the slow finish has been waited out.
WAITED_KEY = "test:slow-finish:waited"


@dramatiq.actor(broker=broker, queue_name="default", time_limit=1_000)
def finish_slowly(tag: str) -> None:
    """Record one run of the job tagged ``tag``."""
    record_run(tag)


def _slow_first_success(outcomes: Any) -> None:
    real = outcomes.succeed

    def succeed(on: Any, message: Any, attempt: Any) -> None:
        if broker.client.hsetnx(WAITED_KEY, message.message_id, 1):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # a time limit still armed lands in one of these
                time.sleep(0.1)
        real(on, message, attempt)

    outcomes.succeed = succeed


for _middleware in broker.middleware:
    if isinstance(_middleware, ErrorPolicy):
        _slow_first_success(_middleware.outcomes)
