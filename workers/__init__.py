"""evalq workers: the Dramatiq broker bootstrap.

``dramatiq workers`` imports this package. It reads Settings once, builds the Redis broker with
evalq's explicit middleware list (no Dramatiq ``Retries``), sets it as the global broker, and only
then imports the actor modules, so every actor binds to this broker.
"""

from __future__ import annotations

import dramatiq

from config.settings import load_settings
from workers import runtime
from workers.bootstrap import build_broker, load_policy_or_exit, refuse_invalid_settings

settings = load_settings()
policy = load_policy_or_exit(settings)
broker = build_broker(settings, policy=policy)
dramatiq.set_broker(broker)
runtime.install(runtime.Runtime(settings, broker.client))

from workers import actors  # noqa: E402  (must follow set_broker)

refuse_invalid_settings(
    actors.timeout_problems(settings.provider_timeout_s, settings.time_limit_for)
)

__all__ = ["actors", "broker", "policy", "settings"]
