"""Run one evaluation: dispatch to a rule metric, the embeddings metric or an LLM judge."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from workers.evaluations.models import EvaluationRequest, EvaluationResult

if TYPE_CHECKING:
    import openai

    from workers.evaluations.llm_judge import Slot


def evaluate(
    request: EvaluationRequest,
    *,
    llm_client: Callable[[], openai.OpenAI],
    slot: Slot = contextlib.nullcontext,
) -> EvaluationResult:
    """Score ``request``. ``llm_client`` is called only for metrics that call the provider (rule
    metrics need none); ``slot(provider)`` is held around each provider request (rate limits)."""
    if request.evaluation.type == "rule":
        from workers.evaluations.rule_metrics import score_rule

        return score_rule(request)
    if request.evaluation.metric == "semantic_similarity":
        from workers.evaluations.semantic_similarity import semantic_similarity

        return semantic_similarity(request, llm_client(), slot=slot)
    from workers.evaluations.llm_judge import judge

    return judge(request, llm_client(), slot=slot)
