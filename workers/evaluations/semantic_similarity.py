"""The ``semantic_similarity`` metric: cosine similarity of two embeddings from the provider.

One evaluation is one ``embeddings`` request for both texts (actual and expected output),
through the same openai client as the LLM judge (``max_retries=0``, the provider timeout), under
the same rate-limit slot and with the same ``X-Evalq-Target`` header. openai exceptions
propagate unchanged for the error policy: a 429 is ``rate_limited``, an unknown embedding model
(404 ``model_not_found``) is ``model_capability``. An answer that does not hold two usable
vectors raises ``JudgeOutputError`` (``invalid_model_output``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

import openai

from workers.evaluations.configs import SemanticSimilarityConfig
from workers.evaluations.llm_judge import TARGET_HEADER, JudgeOutputError, Slot, target_key
from workers.evaluations.models import EvaluationRequest, EvaluationResult


def semantic_similarity(
    request: EvaluationRequest, client: openai.OpenAI, *, slot: Slot = contextlib.nullcontext
) -> EvaluationResult:
    """Score the cosine similarity of the output's and the expected output's embeddings.

    An empty (or all-whitespace) text has no meaning to embed, and the provider would refuse
    it: two empty texts are identical (1), one empty text is unrelated (0), with no request.
    """
    config = request.evaluation.parsed_config()
    if not isinstance(config, SemanticSimilarityConfig):
        raise ValueError(f"metric {request.evaluation.metric!r} is not semantic_similarity")
    actual, expected = request.target.actual_output, request.target.expected_output or ""
    figures: dict[str, Any] = {"model": config.model, "threshold": config.threshold}
    if not actual.strip() or not expected.strip():
        similarity = 1.0 if not actual.strip() and not expected.strip() else 0.0
        reason = "both texts are empty" if similarity else "one of the texts is empty"
        return _result(request, config, similarity, f"{reason}; nothing to embed", figures)

    options: dict[str, Any] = {"dimensions": config.dimensions} if config.dimensions else {}
    with slot(config.provider):
        started = time.monotonic()
        response = client.embeddings.create(
            model=config.model,
            input=[actual, expected],
            encoding_format="float",
            extra_headers={TARGET_HEADER: target_key(request)},
            **options,
        )
        duration_ms = round((time.monotonic() - started) * 1000)

    ordered = sorted(response.data, key=lambda item: item.index)
    if len(ordered) != 2:
        raise JudgeOutputError(f"the provider returned {len(ordered)} embeddings for 2 texts")
    similarity = cosine(ordered[0].embedding, ordered[1].embedding)
    figures |= {
        "provider": config.provider or client.base_url.host,
        "dimensions": len(ordered[0].embedding),
        "prompt_tokens": response.usage.prompt_tokens if response.usage else None,
        "duration_ms": duration_ms,
    }
    return _result(request, config, similarity, "embeddings of both texts", figures)


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    """The cosine of the angle between two vectors, in -1..1.

    Raises JudgeOutputError for vectors of different lengths, empty, non-finite or zero ones
    (the provider's answer is unusable; retrying may help).
    """
    if not left or len(left) != len(right):
        raise JudgeOutputError(
            f"the embeddings have {len(left)} and {len(right)} dimensions; they must match"
        )
    dot = math.fsum(a * b for a, b in zip(left, right, strict=True))
    norm = math.sqrt(math.fsum(a * a for a in left)) * math.sqrt(math.fsum(b * b for b in right))
    if norm == 0 or not math.isfinite(norm) or not math.isfinite(dot):
        raise JudgeOutputError("an embedding is the zero vector or not finite")
    return max(-1.0, min(1.0, dot / norm))


def _result(
    request: EvaluationRequest,
    config: SemanticSimilarityConfig,
    similarity: float,
    source: str,
    figures: dict[str, Any],
) -> EvaluationResult:
    passed = similarity >= config.threshold
    evaluation, target = request.result_key
    return EvaluationResult(
        evaluation_uuid=evaluation,
        target_uuid=target,
        score=similarity,
        # Unrelated texts score near 0 and opposite ones below it: both are 0 here.
        normalized_score=round(100 * max(0.0, similarity), 4),
        has_passed=passed,
        reason=(
            f"cosine similarity {similarity:.3f} is {'at least' if passed else 'below'} the "
            f"threshold {config.threshold:.2f} ({source}, model {config.model})"
        ),
        metadata={"metric": request.evaluation.metric, "similarity": similarity, **figures},
    )
