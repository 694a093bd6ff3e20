"""A worker whose error policy waits past a job's time limit, as it does while Redis is away,
first while counting an attempt, then while writing a success
(``dramatiq workers workers tests.support.slow_settlement``).

Both actors record each run and return at once, under a 1 s limit. On the first attempt of a
``start_slowly`` job, ``History.start_attempt`` first waits 5 s; on the first success of a
``finish_slowly`` job, ``Outcomes.succeed`` first waits 3 s. Each waits in the short sleeps of
a settlement retrying against an absent Redis, where an armed time limit lands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq

from middleware.error_policy import ErrorPolicy
from tests.support.dramatiq_option_actors import record_run
from workers import broker

#: Jobs whose slow step has been waited out (later calls go through at once).
WAITED_KEY = "test:slow-settlement:waited"


@dramatiq.actor(broker=broker, queue_name="default", time_limit=1_000)
def start_slowly(tag: str) -> None:
    """Record one run of the job tagged ``tag``."""
    record_run(tag)


@dramatiq.actor(broker=broker, queue_name="default", time_limit=1_000)
def finish_slowly(tag: str) -> None:
    """Record one run of the job tagged ``tag``."""
    record_run(tag)


def _slowed(real: Callable[..., Any], seconds: float, job_of: Callable[..., tuple[str, str]],
            actor: str) -> Callable[..., Any]:  # fmt: skip
    def first_call_waits(*args: Any, **kwargs: Any) -> Any:
        job_id, actor_name = job_of(*args, **kwargs)
        if actor_name == actor and broker.client.hsetnx(WAITED_KEY, job_id, 1):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.1)
        return real(*args, **kwargs)

    return first_call_waits


for _middleware in broker.middleware:
    if isinstance(_middleware, ErrorPolicy):
        _history, _outcomes = _middleware.history, _middleware.outcomes
        _history.start_attempt = _slowed(  # type: ignore[method-assign]
            _history.start_attempt, 5, lambda job_id, **f: (job_id, f["actor"]), "start_slowly"
        )
        _outcomes.succeed = _slowed(  # type: ignore[method-assign]
            _outcomes.succeed,
            3,
            lambda _, message, __: (message.message_id, message.actor_name),
            "finish_slowly",
        )
