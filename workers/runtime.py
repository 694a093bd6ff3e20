"""What evalq's actors need at run time, built once per broker by the broker bootstrap.

The services are handed in, not fetched from a module global: ``workers.bootstrap.build_broker``
puts a ``Runtime`` on the broker it builds, and an actor reaches it through the broker it is
bound to (``runtime_of(actor.broker)``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import redis

from config.settings import Settings
from workers.rate_limits import RateLimits, slot_ttl_ms
from workers.results import ResultStore

if TYPE_CHECKING:
    import openai

#: Actors that call the provider: their time limit must outlast the provider's HTTP timeout.
LLM_ACTORS = ("run_live_evaluation", "run_batch_evaluation")


class Runtime:
    """Per-broker services shared by every actor: settings, result store, provider client and
    the provider rate limits."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.redis = client
        self.results = ResultStore(client, ttl_s=settings.result_ttl_s)
        self._llm: openai.OpenAI | None = None
        self._limits: RateLimits | None = None
        self._lock = threading.Lock()

    def llm_client(self) -> openai.OpenAI:
        """The provider client, created on first use (rule-only workers never build one)."""
        with self._lock:
            if self._llm is None:
                from workers.evaluations.llm_judge import make_client

                self._llm = make_client(self.settings)
            return self._llm

    def rate_limits(self) -> RateLimits:
        """The provider rate limits, created on first use (a slot's TTL comes from the time
        limit of the actors that call the provider)."""
        with self._lock:
            if self._limits is None:
                self._limits = RateLimits(
                    self.settings, self.redis, slot_ttl_ms=slot_ttl_ms(self.settings, LLM_ACTORS)
                )
            return self._limits


def runtime_of(broker: Any) -> Runtime:
    """The runtime the bootstrap put on ``broker``."""
    runtime = getattr(broker, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise RuntimeError("this broker was not built by workers.bootstrap.build_broker")
    return runtime
