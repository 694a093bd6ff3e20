"""The evalq operations dashboard: a server-rendered Starlette app, its JSON API and /metrics.

``create_app(settings, services)`` builds it; nothing is read from globals. ``evalq dashboard``
serves it, and ``evalq up`` / ``evalq demo`` start it beside their worker pools.
"""

from __future__ import annotations

from dashboard.app import create_app
from dashboard.services import Services

__all__ = ["Services", "create_app"]
