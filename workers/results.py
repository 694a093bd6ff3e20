"""Evaluation results in Redis, one per (evaluation uuid, target uuid).

A result is written with a plain SET: a retry or a duplicate delivery of the same evaluation
overwrites the earlier value, so there is never a second result for one pair.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis

from middleware.state.settlement import TRANSIENT
from workers.evaluations.models import EvaluationResult

logger = logging.getLogger(__name__)

RESULT_KEY_PREFIX = "evalq:result:"
INDEX_KEY_PREFIX = "evalq:results:"


def result_key(evaluation_uuid: str, target_uuid: str) -> str:
    """The Redis key of one result."""
    return f"{RESULT_KEY_PREFIX}{evaluation_uuid}:{target_uuid}"


class ResultStore:
    """Reads and writes evaluation results.

    Parameters:
      client(redis.Redis): The Redis client (shared with the broker).
      ttl_s(int): How long a result is kept, in seconds.
    """

    def __init__(self, client: redis.Redis, *, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    def keep(self, result: EvaluationResult, *, patience_s: float) -> None:
        """Store ``result``, retrying for up to ``patience_s`` seconds while Redis is unreachable:
        a result the provider already gave (and billed) is worth waiting for. Raises the last
        Redis error when Redis stays away (the job is then retried as ``store_unavailable``)."""
        deadline = time.monotonic() + patience_s
        delay = 0.1
        while True:
            try:
                self.put(result)
                return
            except TRANSIENT:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("result of %s/%s not stored yet (Redis unavailable); retrying",
                               result.evaluation_uuid, result.target_uuid)  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def put(self, result: EvaluationResult) -> None:
        """Store ``result``, replacing any earlier result for the same pair."""
        index = f"{INDEX_KEY_PREFIX}{result.evaluation_uuid}"
        pipe = self.client.pipeline(transaction=True)
        pipe.set(
            result_key(result.evaluation_uuid, result.target_uuid),
            result.model_dump_json(),
            ex=self.ttl_s,
        )
        pipe.sadd(index, result.target_uuid)
        pipe.expire(index, self.ttl_s)
        pipe.execute()

    def get(self, evaluation_uuid: str, target_uuid: str) -> EvaluationResult | None:
        """The stored result of the pair, or None."""
        raw = self.client.get(result_key(evaluation_uuid, target_uuid))
        return None if raw is None else EvaluationResult.model_validate_json(raw)

    def get_many(self, pairs: list[tuple[str, str]]) -> list[EvaluationResult | None]:
        """``get`` for many (evaluation uuid, target uuid) pairs, 500 to a round trip."""
        found: list[EvaluationResult | None] = []
        for start in range(0, len(pairs), 500):
            chunk = pairs[start : start + 500]
            raws = self.client.mget([result_key(e, t) for e, t in chunk])
            found.extend(
                None if raw is None else EvaluationResult.model_validate_json(raw)
                for raw in raws  # type: ignore[union-attr]
            )
        return found

    def iter_evaluation(self, evaluation_uuid: str) -> Iterator[EvaluationResult]:
        """Every stored result of one evaluation, in target-uuid order."""
        targets = sorted(
            t.decode() if isinstance(t, bytes) else t
            for t in self.client.smembers(f"{INDEX_KEY_PREFIX}{evaluation_uuid}")  # type: ignore[union-attr]
        )
        for start in range(0, len(targets), 500):
            chunk = targets[start : start + 500]
            raws = self.client.mget([result_key(evaluation_uuid, t) for t in chunk])
            for raw in raws:  # type: ignore[union-attr]
                if raw is not None:
                    yield EvaluationResult.model_validate_json(raw)
