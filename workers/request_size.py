"""The size limit of one evaluation request (``EVALQ_MAX_REQUEST_BYTES``).

A request's size is the length in bytes of its compact JSON encoding in UTF-8, the form it is
enqueued in: the same number whether it came from a JSONL line (whitespace does not count) or
from Python. A request over the limit is refused at submission, before anything is enqueued:
one oversized message would otherwise sit in Redis, in every worker's prefetch and in its
dead letter.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.evaluations.models import EvaluationRequest


class RequestTooLarge(ValueError):
    """A request is larger than ``EVALQ_MAX_REQUEST_BYTES``; nothing was enqueued.

    Attributes: ``size`` and ``limit`` in bytes, ``index`` of the request in the submitted list
    (0 for ``submit_evaluation``).
    """

    def __init__(self, *, size: int, limit: int, index: int = 0) -> None:
        super().__init__(f"request {index}: {too_large_message(size, limit)}; nothing was enqueued")
        self.size = size
        self.limit = limit
        self.index = index


def encoded_size(request: EvaluationRequest) -> int:
    """The size of ``request`` in bytes: its compact JSON encoding in UTF-8."""
    return len(request.model_dump_json().encode("utf-8"))


def too_large_message(size: int, limit: int) -> str:
    """The sentence that refuses a request of ``size`` bytes."""
    return (
        f"the request is {size:,} bytes, over the limit of {limit:,} bytes "
        "(EVALQ_MAX_REQUEST_BYTES)"
    )


def check_sizes(requests: Sequence[EvaluationRequest], limit: int) -> None:
    """Raise ``RequestTooLarge`` for the first request of ``requests`` larger than ``limit``."""
    for index, request in enumerate(requests):
        size = encoded_size(request)
        if size > limit:
            raise RequestTooLarge(size=size, limit=limit, index=index)
