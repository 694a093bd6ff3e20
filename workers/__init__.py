"""evalq workers: the Dramatiq broker bootstrap.

``dramatiq workers`` imports this package. In that process, and only there, the import builds
everything at once: Settings read once, the policy file loaded, Redis found, the Redis broker
built with evalq's explicit middleware list (no Dramatiq ``Retries``) and set as the global
broker, and only then the actor modules imported, so every actor binds to this broker. A
configuration problem stops that worker process with one line (``evalq: ...``) and exit code 2.

Anywhere else (an application, the ``evalq`` CLI, tests) importing ``workers`` or any module in
it does nothing: no settings read, no exit, no output, no Sentry. ``workers.broker``,
``workers.settings`` and ``workers.policy`` are built from the environment on first use (raising
``config.errors.ConfigurationError`` subclasses); an application that wants its own
configuration builds ``workers.client.Evalq(settings)`` instead.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from workers import bootstrap as _bootstrap

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker

    from config.policy import Policy
    from config.settings import Settings

    broker: RedisBroker
    settings: Settings
    policy: Policy

__all__ = ["broker", "default_stack", "policy", "settings"]

_stack: _bootstrap.Stack | None = None
_lock = threading.RLock()


def default_stack() -> _bootstrap.Stack:
    """This process's settings, policy and broker, built from the environment on first use
    (the broker becomes Dramatiq's global broker and evalq's actors are declared on it)."""
    global _stack
    with _lock:
        if _stack is None:
            from config.settings import read_settings

            _stack = _bootstrap.build_stack(read_settings())
            import workers.actors  # noqa: F401  (declares evalq's actors on the stack's broker)
        return _stack


def __getattr__(name: str) -> Any:
    if name in ("broker", "settings", "policy"):
        return getattr(default_stack(), name)
    raise AttributeError(f"module 'workers' has no attribute {name!r}")


if _bootstrap.imported_by_dramatiq_worker():
    try:
        _bootstrap.require_redis(default_stack().broker)
    except _bootstrap.ConfigurationError as _error:
        _bootstrap.exit_worker(_error)
