"""What actors need at run time, built once per process from Settings by the broker bootstrap."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import redis

from config.settings import Settings
from workers.rate_limits import RateLimits, slot_ttl_ms
from workers.results import ResultStore

if TYPE_CHECKING:
    import openai


class Runtime:
    """Per-process services shared by every actor: settings, result store, provider client and
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
        """The provider rate limits, created on first use (after the actors are declared: a
        slot's TTL comes from the time limit of the actors that call the provider)."""
        with self._lock:
            if self._limits is None:
                from workers.actors import LLM_ACTORS

                self._limits = RateLimits(
                    self.settings, self.redis, slot_ttl_ms=slot_ttl_ms(self.settings, LLM_ACTORS)
                )
            return self._limits


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make ``runtime`` the one actors of this process use."""
    global _current
    _current = runtime


def current() -> Runtime:
    """The runtime installed by the broker bootstrap."""
    if _current is None:
        raise RuntimeError("evalq runtime not installed: import the 'workers' package first")
    return _current
