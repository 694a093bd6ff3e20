"""Dramatiq's retry vocabulary, mapped onto the error policy.

An actor moved onto evalq keeps the options Dramatiq taught its authors; each one changes what the
policy decides for that actor, never how an error is classified:

- ``max_retries`` (message option, else actor option) caps the ``max_retries`` of every category
  the policy retries: ``min(policy, option)``. With ``max_retries_override=True`` it replaces
  them instead, so it may also raise a budget. Either way ``max_attempts`` still caps the job.
- ``min_backoff`` / ``max_backoff`` (milliseconds, as in Dramatiq) replace the backoff bounds of
  every category; when they cross, ``max_backoff`` wins (as in the policy file).
- ``throws`` (actor option, exception classes): an expected failure. Any link of the chain that
  is an instance dead-letters the job at once, logged without a traceback, in the category its
  rules gave it, or ``invalid_request`` when no rule knew it.
- ``retry_when(retries, exception)`` (actor option) is asked after the policy decided to retry;
  a falsy answer turns the retry into a dead letter. It never turns a dead letter into a retry.

``dramatiq.Retry`` raised by an actor is classified ``retry_requested`` by the error-policy
middleware (it knows Dramatiq; this module does not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from config.policy import ResolvedPolicy
from middleware.core.classify import UNKNOWN, Classification
from middleware.core.decisions import Decision

#: The options this module reads; the error-policy middleware declares them to Dramatiq.
RETRY_OPTIONS: Final = frozenset(
    {"max_retries", "max_retries_override", "min_backoff", "max_backoff", "throws", "retry_when"}
)
#: Options that may come with a message (JSON); the others are actor options only.
MESSAGE_RETRY_OPTIONS: Final = frozenset(
    {"max_retries", "max_retries_override", "min_backoff", "max_backoff"}
)
#: The category of an exception named by ``throws`` that no rule knew.
THROWS_FALLBACK_CATEGORY: Final = "invalid_request"
#: The rule name recorded for that fallback.
THROWS_RULE: Final = "actor option throws"

RetryWhen = Callable[[int, BaseException], object]


class InvalidRetryOption(ValueError):
    """An actor or message option of Dramatiq's retry vocabulary has a value evalq cannot use."""


@dataclass(frozen=True)
class RetryOptions:
    """The retry options in force for one message: its own, else its actor's.

    Parameters:
      max_retries: Cap (or, with ``override``, value) of every retried category's budget.
      override: ``max_retries`` replaces the policy's budgets instead of capping them.
      min_backoff_ms: First retry delay of every category, in milliseconds.
      max_backoff_ms: Longest retry delay of every category, in milliseconds.
      throws: Exception classes that are expected failures: dead-lettered at once.
      retry_when: Asked ``retry_when(retries so far, exception)`` before each retry.
    """

    max_retries: int | None = None
    override: bool = False
    min_backoff_ms: int | None = None
    max_backoff_ms: int | None = None
    throws: tuple[type[BaseException], ...] = ()
    retry_when: RetryWhen | None = None

    @classmethod
    def read(
        cls, message_options: Mapping[str, Any], actor_options: Mapping[str, Any], *, where: str
    ) -> RetryOptions:
        """The options of a message (first) and its actor; ``where`` names them in errors."""

        def pick(name: str) -> Any:
            if name in MESSAGE_RETRY_OPTIONS and message_options.get(name) is not None:
                return message_options[name]
            return actor_options.get(name)

        return cls(
            max_retries=_count(pick("max_retries"), "max_retries", where),
            override=_flag(pick("max_retries_override"), "max_retries_override", where),
            min_backoff_ms=_count(pick("min_backoff"), "min_backoff", where),
            max_backoff_ms=_count(pick("max_backoff"), "max_backoff", where),
            throws=_exception_classes(actor_options.get("throws"), where),
            retry_when=_callable(actor_options.get("retry_when"), where),
        )

    @property
    def changes_policy(self) -> bool:
        """Whether any option here changes what the policy decides."""
        return self != RetryOptions()

    def apply(self, resolved: ResolvedPolicy) -> ResolvedPolicy:
        """``resolved`` with these options in force (a category that is not retried stays so)."""
        changes: dict[str, Any] = {}
        if resolved.action == "retry" and self.max_retries is not None:
            changes["max_retries"] = (
                self.max_retries if self.override else min(resolved.max_retries, self.max_retries)
            )
        low = resolved.min_backoff_ms if self.min_backoff_ms is None else self.min_backoff_ms
        high = resolved.max_backoff_ms if self.max_backoff_ms is None else self.max_backoff_ms
        if (low, high) != (resolved.min_backoff_ms, resolved.max_backoff_ms):
            changes["min_backoff_ms"] = min(low, high)
            changes["max_backoff_ms"] = high
        return dataclasses.replace(resolved, **changes) if changes else resolved

    def thrown(self, chain: tuple[BaseException, ...] | list[BaseException]) -> bool:
        """Whether a link of ``chain`` is an expected failure (``throws``)."""
        return bool(self.throws) and any(isinstance(link, self.throws) for link in chain)

    def describe(self) -> list[str]:
        """One phrase per option in force, for ``evalq policy check`` and ``explain``."""
        out = []
        if self.max_retries is not None:
            verb = "sets" if self.override else "caps"
            out.append(f"max_retries={self.max_retries} ({verb} every retried category)")
        if self.min_backoff_ms is not None:
            out.append(f"min_backoff={self.min_backoff_ms} ms")
        if self.max_backoff_ms is not None:
            out.append(f"max_backoff={self.max_backoff_ms} ms")
        if self.throws:
            names = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in self.throws)
            out.append(f"throws=({names}) dead-lettered at once")
        if self.retry_when is not None:
            out.append(f"retry_when={getattr(self.retry_when, '__qualname__', self.retry_when)}")
        return out


def _count(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRetryOption(f"{where}: {name} must be a whole number >= 0, got {value!r}")
    return value


def _flag(value: Any, name: str, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRetryOption(f"{where}: {name} must be true or false, got {value!r}")
    return value


def _exception_classes(value: Any, where: str) -> tuple[type[BaseException], ...]:
    if value is None:
        return ()
    found = value if isinstance(value, tuple | list) else (value,)
    for item in found:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise InvalidRetryOption(
                f"{where}: throws must be an exception class or a tuple of them, got {item!r}"
            )
    return tuple(found)


def _callable(value: Any, where: str) -> RetryWhen | None:
    if value is None:
        return None
    if not callable(value):
        raise InvalidRetryOption(
            f"{where}: retry_when must be a function (retries, exception) -> bool, got {value!r}"
        )
    return value  # type: ignore[no-any-return]


#: The category of a ``dramatiq.Retry`` an actor raised.
RETRY_REQUESTED: Final = "retry_requested"
#: The rule name recorded for it.
RETRY_REQUESTED_RULE: Final = "dramatiq.Retry"


def requested_retry(classification: Classification, *, delay_ms: int | None) -> Classification:
    """The classification of a ``dramatiq.Retry``: its own category, its delay as the wait asked
    for (the category's ``honor_retry_after`` applies it, capped at its ``max_backoff_ms``)."""
    return dataclasses.replace(
        classification,
        category=RETRY_REQUESTED,
        rule=RETRY_REQUESTED_RULE,
        retry_after_s=None if delay_ms is None else max(0, delay_ms) / 1000,
        forced_action=None,
    )


def expected_failure(classification: Classification) -> Classification:
    """The classification of a failure the actor's ``throws`` names: dead-lettered at once, in
    the category its rules gave it, else ``invalid_request``."""
    if classification.category == UNKNOWN:
        return dataclasses.replace(
            classification,
            category=THROWS_FALLBACK_CATEGORY,
            rule=THROWS_RULE,
            forced_action="dead_letter",
        )
    return dataclasses.replace(classification, forced_action="dead_letter")


def second_opinion(
    options: RetryOptions, decision: Decision, *, retries: int, exception: BaseException
) -> tuple[Decision, BaseException | None]:
    """``decision``, unless it is a retry that ``retry_when`` declines: then a dead letter.

    Returns the decision and the exception ``retry_when`` itself raised, if it did (the policy's
    decision then stands: a broken predicate must not lose or loop a job).
    """
    if decision.action != "retry" or options.retry_when is None:
        return decision, None
    try:
        keep = options.retry_when(retries, exception)
    except Exception as error:
        return decision, error
    if keep:
        return decision, None
    planned = decision.retries.get(decision.category, 0)
    reason = f"{decision.category}: retry_when declined retry {planned} (after {retries} retries)"
    retries_before = dict(decision.retries)
    retries_before[decision.category] = max(0, retries_before.get(decision.category, 1) - 1)
    return Decision("dead_letter", decision.category, None, reason, retries_before), None
