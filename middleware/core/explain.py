"""``evalq policy explain``: what the policy does with a described exception, without raising it."""

from __future__ import annotations

import builtins
import dataclasses
import importlib
from typing import Any

from config.policy import Policy
from middleware.core.classify import (
    BUILTIN_LAYER,
    EXPLICIT_RULE,
    builtin_category,
    classify_facts,
)
from middleware.core.errors import CategorizedError
from middleware.core.facts import ErrorFacts, type_names
from middleware.core.retry_options import (
    RETRY_REQUESTED,
    RETRY_REQUESTED_RULE,
    THROWS_FALLBACK_CATEGORY,
    THROWS_RULE,
    RetryOptions,
)

#: The dotted names of Dramatiq's ``Retry`` exception.
_DRAMATIQ_RETRY = frozenset({"dramatiq.Retry", "dramatiq.errors.Retry"})


def explain(
    policy: Policy,
    *,
    type_name: str,
    message: str = "",
    status: int | None = None,
    code: str | None = None,
    error_type: str | None = None,
    actor: str,
    queue: str,
    env: str,
    import_type: bool = True,
    options: RetryOptions | None = None,
) -> dict[str, Any]:
    """Classify a described exception and resolve its category's policy.

    Matching uses ``type_name`` as given; with ``import_type`` the class is also looked up
    (``importlib``, which runs the module's import) so rules naming one of its bases match too.
    The answer says which: ``types`` lists the names matched on and ``type_imported`` whether the
    class was found. ``attempts_allowed`` is how many times a job failing every attempt with this
    category runs: ``min(max_retries + 1, max_attempts)``, or 1 when the action is not ``retry``.
    ``layer`` names what decided: ``built-in`` (evalq's own taxonomy), ``explicit`` (a
    ``CategorizedError`` class names its category), the layer of the matching rule (``shipped``
    or the user's file), or None for ``unknown``. ``options`` are the actor's Dramatiq retry
    options (``middleware.core.retry_options``): the budgets shown are the ones they leave, and
    ``actor_options`` lists them.
    """
    options = options or RetryOptions()
    found = find_exception_class(type_name) if import_type else None
    types: tuple[str, ...] = (type_name,)
    if found is not None:
        types += tuple(name for name in type_names(found) if name != type_name)
    facts = ErrorFacts(
        types=types, message=message, status=status, code=code, error_type=error_type
    )
    category, rule, layer = _decide(facts, found, policy)
    action: str | None = None
    if _DRAMATIQ_RETRY.intersection(types):
        category, rule, layer = RETRY_REQUESTED, RETRY_REQUESTED_RULE, BUILTIN_LAYER
    elif found is not None and options.throws and issubclass(found, options.throws):
        if category == "unknown":
            category, rule, layer = THROWS_FALLBACK_CATEGORY, THROWS_RULE, "actor options"
        action = "dead_letter"
    resolved = options.apply(policy.resolve(category, actor=actor, queue=queue, env=env))
    if action is not None:
        resolved = dataclasses.replace(resolved, action=action)  # type: ignore[arg-type]
    return {
        "category": category,
        "rule": rule,
        "layer": layer,
        "action": resolved.action,
        "max_retries": resolved.max_retries,
        "max_attempts": resolved.max_attempts,
        "min_backoff_ms": resolved.min_backoff_ms,
        "max_backoff_ms": resolved.max_backoff_ms,
        "jitter": resolved.jitter,
        "honor_retry_after": resolved.honor_retry_after,
        "report": resolved.report,
        "attempts_allowed": resolved.attempts_allowed,
        "types": list(types),
        "type_imported": found is not None,
        "actor_options": options.describe(),
    }


def _decide(
    facts: ErrorFacts, found: type[BaseException] | None, policy: Policy
) -> tuple[str, str | None, str | None]:
    """``(category, rule, layer)`` as ``middleware.core.classify.classify`` would decide."""
    builtin = builtin_category(facts)
    if builtin is not None:
        return builtin[0], builtin[1], BUILTIN_LAYER
    if found is not None and issubclass(found, CategorizedError):
        return found.category, EXPLICIT_RULE, "explicit"
    category, rule, _ = classify_facts([facts], policy.rules)
    layer = next((r.layer for r in policy.rules if r.name == rule), None)
    return category, rule, layer


def find_exception_class(dotted: str) -> type[BaseException] | None:
    """The exception class named ``dotted`` (``pkg.mod.Name``, ``pkg.Name`` re-exported, or a
    builtin ``Name``), importing its module; None when it cannot be found or is no exception."""
    parts = dotted.split(".")
    candidate: Any = None
    if len(parts) == 1:
        candidate = getattr(builtins, dotted, None)
    for cut in range(len(parts) - 1, 0, -1):
        if candidate is not None:
            break
        try:
            candidate = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        for attribute in parts[cut:]:
            candidate = getattr(candidate, attribute, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None
