"""What the dashboard reads and acts on, handed to the app factory (no globals)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from config.policy import Policy
from config.settings import Settings
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from workers.lanes import QUEUES
from workers.results import ResultStore


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Services:
    """The Redis stores the dashboard uses, and the policy that says how many attempts a job has.

    Parameters:
      client: The Redis client of the broker the workers use.
      history: Job states and attempt timelines.
      dead_letters: The dead-letter store.
      results: Evaluation results.
      policy: The error policy (for "attempt n of max").
      env: The deployment environment the policy is resolved for.
      queues: The queues shown on the overview.
      job_ttl_s: How long an abort request is kept, in seconds.
      clock: Milliseconds since the epoch (handed in so tests can fix it).
    """

    client: redis.Redis
    history: History
    dead_letters: DeadLetters
    results: ResultStore
    policy: Policy
    env: str = "development"
    queues: tuple[str, ...] = QUEUES
    job_ttl_s: int = 7 * 24 * 3600
    clock: Callable[[], int] = field(default=_now_ms)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis, policy: Policy) -> Services:
        """The services of a dashboard on ``client``, sized from ``settings``."""
        return cls(
            client=client,
            history=History(client, ttl_s=settings.job_ttl_s),
            dead_letters=DeadLetters(
                client, max_records=settings.dlq_max_records, max_age_s=settings.dlq_max_age_s
            ),
            results=ResultStore(client, ttl_s=settings.result_ttl_s),
            policy=policy,
            env=settings.env,
            job_ttl_s=settings.job_ttl_s,
        )
