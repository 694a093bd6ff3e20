"""Middleware hooks called only on the middleware that define them.

Dramatiq's broker calls every hook on every middleware: each ``emit_before`` and ``emit_after``
walks the whole list and calls the no-op that ``Middleware`` defines for the hooks a middleware
does not implement. A worker of evalq's stack has twelve middleware and emits about ten hooks per
job, most of them no-ops for most of the list, and a ``send()`` walks all twelve twice to reach
none. ``HookDispatch`` keeps, per hook, the middleware that define it, in the broker's order, and
calls only those (each hook looked up at the call, as Dramatiq does), with Dramatiq's handling of
their errors. The list is rebuilt whenever the broker's middleware list is not the one it was
built from (``add_middleware``, or the list changed in place).
"""

from __future__ import annotations

from typing import Any

from dramatiq.middleware import Middleware, MiddlewareError


def _defines(middleware: Middleware, hook: str) -> bool:
    """Whether ``middleware`` does anything on ``hook``: its class (or the instance) replaces
    ``Middleware``'s no-op."""
    base = getattr(Middleware, hook, None)
    return hook in vars(middleware) or base is None or getattr(type(middleware), hook) is not base


class HookDispatch:
    """Mix in before a Dramatiq broker class: ``emit_before`` / ``emit_after`` as Dramatiq's,
    skipping middleware whose hook is ``Middleware``'s no-op."""

    middleware: list[Middleware]
    logger: Any

    def _defining(self, hook: str) -> tuple[Middleware, ...]:
        """The middleware that define ``hook``, in the broker's order."""
        cache = self.__dict__.setdefault("_hook_cache", {})
        known = cache.get(hook)
        if known is not None and known[0] == self.middleware:
            return known[1]  # type: ignore[no-any-return]
        found = tuple(m for m in self.middleware if _defines(m, hook))
        cache[hook] = (list(self.middleware), found)
        return found

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "before_" + signal
        for middleware in self._defining(hook):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical(
                    "Unexpected failure in %s of %r.", hook, middleware, exc_info=True
                )

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "after_" + signal
        for middleware in reversed(self._defining(hook)):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except Exception:
                self.logger.critical(
                    "Unexpected failure in %s of %r.", hook, middleware, exc_info=True
                )
