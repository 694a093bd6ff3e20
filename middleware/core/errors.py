"""Exceptions that carry their error category.

Application code raises ``RateLimited``, ``NonRetryable`` and friends when it knows better than
the rules (``middleware.core.facts`` reads what rules match on any other exception). Nothing here
imports a provider SDK.
"""

from __future__ import annotations

from typing import Any, ClassVar

from config.policy import CATEGORIES, Action

#: How much of an exception's message is kept for matching and records, in characters.
MESSAGE_LIMIT = 2000


class CategorizedError(Exception):
    """An exception that names its own error category; the classifier takes it over any rule.

    Parameters:
      message: What went wrong.
      category: One of ``config.policy.CATEGORIES``; defaults to the class's ``category``.
      retry_after: How long the caller asked to wait before a retry, in seconds (or None).
    """

    category: str = "unknown"
    #: An action that overrides the category's policy (``None``: the policy decides).
    forced_action: ClassVar[Action | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.category not in CATEGORIES:
            raise TypeError(f"{cls.__qualname__}.category {cls.category!r} is not a category")

    def __init__(
        self, message: str = "", *, category: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if category is not None:
            if category not in CATEGORIES:
                raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
            self.category = category
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not in ``args``: rebuild from the message, restore the rest.
        return (type(self), (self.message,), self.__dict__)


class NonRetryable(CategorizedError):
    """Dead-letter this job now, whatever the category's policy says."""

    category = "invalid_request"
    forced_action = "dead_letter"

    def __init__(self, message: str = "", *, category: str = "invalid_request") -> None:
        super().__init__(message, category=category)


class Retryable(CategorizedError):
    """Retry this job, within the category's ``max_retries`` and the job's ``max_attempts``."""

    category = "provider_unavailable"
    forced_action = "retry"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        category: str = "provider_unavailable",
    ) -> None:
        super().__init__(message, category=category, retry_after=retry_after)


class RateLimited(CategorizedError):
    category = "rate_limited"


class ProviderUnavailable(CategorizedError):
    category = "provider_unavailable"


class ProviderTimeout(CategorizedError):
    category = "timeout"


class InvalidModelOutput(CategorizedError):
    category = "invalid_model_output"


class ModelCapabilityError(CategorizedError):
    category = "model_capability"


class ContextLengthExceeded(CategorizedError):
    category = "context_length"


class QuotaExhausted(CategorizedError):
    category = "quota_exhausted"


class AuthenticationFailed(CategorizedError):
    category = "auth"


class InvalidRequest(CategorizedError):
    category = "invalid_request"


class InvalidPayload(CategorizedError):
    category = "invalid_payload"


class ContentFiltered(CategorizedError):
    category = "content_filtered"


class JobAborted(CategorizedError):
    """An operator aborted the job: it is recorded and never retried."""

    category = "aborted"
    forced_action = "dead_letter"


class JobExpired(CategorizedError):
    """The job waited longer than its lane allows."""

    category = "expired"
    forced_action = "dead_letter"


class Throttled(Exception):
    """evalq's own rate limit is full: run the job again later, without spending its budgets.

    Raised by code that guards a shared resource (e.g. a provider's concurrency cap); the error
    policy re-delays the job by ``retry_after_s`` (or a short jittered delay) and records the
    attempt as ``throttled``, not as a failure.
    """

    def __init__(self, limit: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"rate limit {limit!r} is full")
        self.limit = limit
        self.retry_after_s = retry_after_s
