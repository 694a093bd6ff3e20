"""Interrupts raised where CPython would deliver one, to test code that must survive them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def interrupting_at(
    n: int, functions: tuple[str, ...], interrupt: type[BaseException]
) -> Callable[[Any, str, Any], None]:
    """A profile function (``sys.setprofile``) raising ``interrupt`` at the ``n``-th point where
    CPython would deliver an asynchronous exception inside any of ``functions`` (qualified
    names): each one's entry, and the return of each call it makes to C code (a lock, a list,
    a release)."""
    seen = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if event in ("call", "c_return") and frame.f_code.co_qualname in functions:
            seen += 1
            if seen == n:
                raise interrupt

    return profile
