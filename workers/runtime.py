"""What actors need at run time, built once per process from Settings by the broker bootstrap."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import redis

from config.settings import Settings
from workers.results import ResultStore

if TYPE_CHECKING:
    import openai


class Runtime:
    """Per-process services shared by every actor: settings, result store, provider client."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.redis = client
        self.results = ResultStore(client, ttl_s=settings.result_ttl_s)
        self._llm: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def llm_client(self) -> openai.OpenAI:
        """The provider client, created on first use (rule-only workers never build one)."""
        with self._lock:
            if self._llm is None:
                from workers.evaluations.llm_judge import make_client

                self._llm = make_client(self.settings)
            return self._llm


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
