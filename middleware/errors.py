"""The exceptions applications raise to choose their error category.

This is the stable import path for application code (``from middleware.errors import
NonRetryable``); the classes live in ``middleware.core.errors``.
"""

from middleware.core.errors import (
    AuthenticationFailed,
    CategorizedError,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidModelOutput,
    InvalidPayload,
    InvalidRequest,
    JobAborted,
    JobExpired,
    ModelCapabilityError,
    NonRetryable,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    Retryable,
    Throttled,
)

__all__ = [
    "AuthenticationFailed",
    "CategorizedError",
    "ContentFiltered",
    "ContextLengthExceeded",
    "InvalidModelOutput",
    "InvalidPayload",
    "InvalidRequest",
    "JobAborted",
    "JobExpired",
    "ModelCapabilityError",
    "NonRetryable",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExhausted",
    "RateLimited",
    "Retryable",
    "Throttled",
]
