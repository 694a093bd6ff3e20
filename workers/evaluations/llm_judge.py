"""LLM-as-judge metrics (``binary``, ``rating``, ``comparison``, ``custom``) through the
official openai SDK.

One judgement is one chat-completions request. The client is built with ``max_retries=0``: the
error-policy middleware is the only retry owner, so the SDK never repeats a request behind its
back. openai exceptions propagate unchanged, for the middleware to classify. The judge's answer
is validated strictly; an answer that is not JSON or does not fit its verdict raises
``JudgeOutputError`` (category ``invalid_model_output``).

Two output modes:

- ``json``: ``response_format={"type": "json_object"}``; the verdict is the message content.
- ``tools``: one function tool, ``submit_verdict``, whose parameters are the verdict's JSON
  schema, forced with ``tool_choice``; the verdict is the tool call's arguments.

Every request carries the header ``X-Evalq-Target: <evaluation uuid>/<target uuid>`` so that a
provider's logs (and the simulated provider in ``workers.demo.provider``) can attribute it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.completion_usage import CompletionUsage
from pydantic import BaseModel, ConfigDict, ValidationError

from config.settings import Settings
from middleware.core.errors import InvalidModelOutput
from workers.evaluations import custom_judge
from workers.evaluations.configs import (
    BinaryConfig,
    ComparisonConfig,
    CustomJudgeConfig,
    RatingConfig,
)
from workers.evaluations.custom_judge import CustomVerdict
from workers.evaluations.models import EvaluationRequest, EvaluationResult

#: The header that attributes a provider request to one (evaluation, target) pair.
TARGET_HEADER = "X-Evalq-Target"

#: The name of the one function tool offered in ``tools`` mode.
VERDICT_TOOL = "submit_verdict"

#: How much of a bad answer a JudgeOutputError keeps, in characters.
RAW_LIMIT = 500

#: Sent when no API key is configured, so the SDK builds a client; the provider then answers 401.
_NO_KEY = "unset"

JudgeConfig = BinaryConfig | RatingConfig | ComparisonConfig | CustomJudgeConfig

#: Holds a provider's rate limits around one request: called with the config's ``provider``
#: (None when it names none); ``workers.rate_limits.RateLimits.slot`` in a worker.
Slot = Callable[[str | None], AbstractContextManager[Any]]


class JudgeOutputError(InvalidModelOutput, ValueError):
    """The judge's answer is not valid JSON or does not fit its verdict schema; always
    ``invalid_model_output``, whatever the policy file says.

    Parameters:
      message: What is wrong with the answer.
      raw: The answer as received; kept truncated to ``RAW_LIMIT`` characters in ``.raw``.
    """

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = _truncate(raw or "")


class BinaryVerdict(BaseModel):
    """A ``binary`` judge's answer: ``{"passed": bool, "reason": str}``."""

    model_config = ConfigDict(strict=True, frozen=True)

    passed: bool
    reason: str


class RatingVerdict(BaseModel):
    """A ``rating`` judge's answer: ``{"rating": int, "reason": str}``."""

    model_config = ConfigDict(strict=True, frozen=True)

    rating: int
    reason: str


class ComparisonVerdict(BaseModel):
    """A ``comparison`` judge's answer: ``{"score": <0..1>, "reason": str}``."""

    model_config = ConfigDict(strict=True, frozen=True)

    score: float
    reason: str


Verdict = BinaryVerdict | RatingVerdict | ComparisonVerdict | CustomVerdict


def make_client(settings: Settings) -> openai.OpenAI:
    """Build the provider client from settings; it never retries (evalq's middleware does)."""
    return openai.OpenAI(
        base_url=settings.provider_base_url,
        api_key=settings.provider_api_key.get_secret_value() or _NO_KEY,
        timeout=settings.provider_timeout_s,
        max_retries=0,
    )


def target_key(request: EvaluationRequest) -> str:
    """The value of the ``X-Evalq-Target`` header for this request: ``<evaluation>/<target>``."""
    evaluation, target = request.result_key
    return f"{evaluation}/{target}"


def judge(
    request: EvaluationRequest, client: openai.OpenAI, *, slot: Slot = contextlib.nullcontext
) -> EvaluationResult:
    """Run one LLM judgement: exactly one provider request, no retries.

    ``slot(provider)`` is held around the provider request only, not around building the prompt
    or reading the answer; whatever it raises on entry (``Throttled``) propagates unchanged.

    Raises JudgeOutputError when the answer does not fit the verdict,
    ``openai.ContentFilterFinishReasonError`` when the judge refused or was filtered, and any
    openai exception of the request itself, unchanged.
    """
    config = request.evaluation.parsed_config()
    if not isinstance(config, JudgeConfig):
        raise ValueError(f"metric {request.evaluation.metric!r} is not an LLM judge metric")
    mode_arguments: dict[str, Any]
    if config.output_mode == "tools":
        mode_arguments = {
            "tools": [verdict_tool(config)],
            "tool_choice": {"type": "function", "function": {"name": VERDICT_TOOL}},
        }
    else:
        mode_arguments = {"response_format": {"type": "json_object"}}

    messages = build_messages(request, config)
    with slot(config.provider):
        started = time.monotonic()
        response = client.chat.completions.create(
            model=config.model,
            messages=messages,
            temperature=config.temperature,
            extra_headers={TARGET_HEADER: target_key(request)},
            **mode_arguments,
        )
        duration_ms = round((time.monotonic() - started) * 1000)

    verdict = parse_verdict(response, config)
    return shape_result(
        request,
        config,
        verdict,
        usage=response.usage,
        duration_ms=duration_ms,
        provider=config.provider or client.base_url.host,
    )


# --- prompt ----------------------------------------------------------------------------------


def verdict_shape(config: JudgeConfig) -> str:
    """The verdict's exact shape, as the system prompt states it."""
    if isinstance(config, CustomJudgeConfig):
        return custom_judge.schema_instruction(config)
    if isinstance(config, ComparisonConfig):
        return (
            '{"score": <number from 0 (unrelated) to 1 (equivalent)>, '
            '"reason": "<one or two sentences explaining the score>"}'
        )
    if isinstance(config, RatingConfig):
        return (
            f'{{"rating": <integer from {config.min_rating} to {config.max_rating}>, '
            '"reason": "<one or two sentences explaining the rating>"}'
        )
    return '{"passed": <true or false>, "reason": "<one or two sentences explaining the verdict>"}'


def verdict_schema(config: JudgeConfig) -> dict[str, Any]:
    """The verdict's JSON schema: the parameters of the ``submit_verdict`` tool."""
    if isinstance(config, CustomJudgeConfig):
        return config.verdict_schema
    reason = {"type": "string", "description": "One or two sentences explaining the verdict."}
    if isinstance(config, ComparisonConfig):
        score = {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "From 0 (unrelated to the expected output) to 1 (equivalent).",
        }
        properties: dict[str, Any] = {"score": score, "reason": reason}
    elif isinstance(config, RatingConfig):
        rating = {
            "type": "integer",
            "minimum": config.min_rating,
            "maximum": config.max_rating,
            "description": f"From {config.min_rating} (worst) to {config.max_rating} (best).",
        }
        properties = {"rating": rating, "reason": reason}
    else:
        passed = {"type": "boolean", "description": "Whether the output meets the criteria."}
        properties = {"passed": passed, "reason": reason}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def verdict_tool(config: JudgeConfig) -> dict[str, Any]:
    """The one function tool offered in ``tools`` mode."""
    return {
        "type": "function",
        "function": {
            "name": VERDICT_TOOL,
            "description": "Submit the evaluation verdict.",
            "parameters": verdict_schema(config),
        },
    }


def build_messages(
    request: EvaluationRequest, config: JudgeConfig
) -> list[ChatCompletionMessageParam]:
    """The system message (task, criteria and exact output shape) and the user message (the
    target; for ``custom``, the user's prompt with the target filled in)."""
    if config.output_mode == "tools":
        answer = (
            f"Submit your verdict by calling the function {VERDICT_TOOL} once, with arguments "
            "of exactly this shape:"
        )
    else:
        answer = "Reply with a single JSON object and nothing else, of exactly this shape:"
    if isinstance(config, CustomJudgeConfig):
        answer = answer.replace("of exactly this shape:", "conforming to this JSON schema:")
        system = f"You are an impartial evaluation judge.\n\n{answer}\n{verdict_shape(config)}"
        user = custom_judge.render_prompt(config.prompt, request.target)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if isinstance(config, ComparisonConfig):
        task = (
            "Compare the actual output with the expected output and score how well it "
            "matches it, from 0 (unrelated) to 1 (equivalent), by the criteria below."
        )
    elif isinstance(config, RatingConfig):
        task = (
            "Rate how well the actual output meets the criteria below, as an integer from "
            f"{config.min_rating} (worst) to {config.max_rating} (best)."
        )
    else:
        task = "Decide whether the actual output meets the criteria below."
    system = (
        f"You are an impartial evaluation judge. {task}\n\n"
        f"Criteria:\n{config.criteria}\n\n"
        f"{answer}\n{verdict_shape(config)}"
    )

    target = request.target
    sections = [("input", target.input), ("actual_output", target.actual_output)]
    sections.append(("expected_output", target.expected_output))
    user = "\n\n".join(
        f"<{name}>\n{text}\n</{name}>" for name, text in sections if text is not None
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# --- answer ----------------------------------------------------------------------------------


def parse_verdict(response: ChatCompletion, config: JudgeConfig) -> Verdict:
    """Extract and validate the verdict from a chat completion.

    Raises JudgeOutputError for a missing, non-JSON or ill-shaped answer, and
    ``openai.ContentFilterFinishReasonError`` when the judge refused or its answer was filtered
    (retrying that would not help, so it is not an output error).
    """
    if not response.choices:
        raise JudgeOutputError("the response has no choices")
    choice = response.choices[0]
    message = choice.message
    if choice.finish_reason == "content_filter" or message.refusal:
        raise openai.ContentFilterFinishReasonError(completion=response)
    cut_off = " (cut off at the token limit)" if choice.finish_reason == "length" else ""

    if config.output_mode == "tools":
        call = next(
            (
                call
                for call in message.tool_calls or []
                if call.type == "function" and call.function.name == VERDICT_TOOL
            ),
            None,
        )
        if call is None:
            raise JudgeOutputError(
                f"the judge did not call {VERDICT_TOOL}{cut_off}", message.content
            )
        raw = call.function.arguments
    else:
        if not message.content or not message.content.strip():
            raise JudgeOutputError(f"the judge's answer is empty{cut_off}", message.content)
        raw = message.content
    return validate_verdict(raw, config, hint=cut_off)


def validate_verdict(raw: str, config: JudgeConfig, *, hint: str = "") -> Verdict:
    """Parse the judge's raw JSON answer into its verdict, strictly (``"true"`` is not a bool)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        message = f"the judge's answer is not valid JSON{hint}: {error}"
        raise JudgeOutputError(message, raw) from None
    if not isinstance(data, dict):
        raise JudgeOutputError(
            f"the judge's answer is a JSON {type(data).__name__}, not an object{hint}", raw
        )
    if isinstance(config, CustomJudgeConfig):
        try:
            return custom_judge.read_verdict(data, config)
        except ValueError as error:
            raise JudgeOutputError(str(error), raw) from None
    model: type[BinaryVerdict | RatingVerdict | ComparisonVerdict] = BinaryVerdict
    if isinstance(config, RatingConfig):
        model = RatingVerdict
    elif isinstance(config, ComparisonConfig):
        model = ComparisonVerdict
    try:
        verdict = model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'answer'}: {item['msg']}"
            for item in error.errors()
        )
        raise JudgeOutputError(
            f"the judge's answer does not fit the {_METRIC_OF[model]} verdict: {problems}", raw
        ) from None
    if (
        isinstance(verdict, RatingVerdict)
        and isinstance(config, RatingConfig)
        and not config.min_rating <= verdict.rating <= config.max_rating
    ):
        raise JudgeOutputError(
            f"rating {verdict.rating} is outside the scale "
            f"{config.min_rating}..{config.max_rating}",
            raw,
        )
    if isinstance(verdict, ComparisonVerdict) and not 0 <= verdict.score <= 1:
        raise JudgeOutputError(f"score {verdict.score:g} is outside 0..1", raw)
    return verdict


_METRIC_OF: dict[type[BaseModel], str] = {
    BinaryVerdict: "binary",
    RatingVerdict: "rating",
    ComparisonVerdict: "comparison",
}


def _scored(config: JudgeConfig, verdict: Verdict) -> tuple[float, float, bool]:
    """(score, normalized score 0..100, passed) of a verdict that fits ``config``."""
    if isinstance(verdict, CustomVerdict) and isinstance(config, CustomJudgeConfig):
        return verdict.score, custom_judge.normalized(verdict, config), verdict.passed
    if isinstance(verdict, ComparisonVerdict) and isinstance(config, ComparisonConfig):
        return verdict.score, verdict.score * 100, verdict.score >= config.threshold
    if isinstance(verdict, RatingVerdict) and isinstance(config, RatingConfig):
        span = config.max_rating - config.min_rating
        normalized = (verdict.rating - config.min_rating) / span * 100
        return float(verdict.rating), normalized, verdict.rating >= config.effective_pass_rating
    if isinstance(verdict, BinaryVerdict):
        return float(verdict.passed), 100.0 * verdict.passed, verdict.passed
    raise TypeError(f"a {type(verdict).__name__} does not fit a {type(config).__name__}")


def shape_result(
    request: EvaluationRequest,
    config: JudgeConfig,
    verdict: Verdict,
    *,
    usage: CompletionUsage | None,
    duration_ms: int,
    provider: str,
) -> EvaluationResult:
    """Turn a validated verdict into the stored result (normalized score 0..100)."""
    score, normalized, passed = _scored(config, verdict)
    extra = {"verdict": verdict.data} if isinstance(verdict, CustomVerdict) else {}
    evaluation, target = request.result_key
    return EvaluationResult(
        evaluation_uuid=evaluation,
        target_uuid=target,
        score=score,
        normalized_score=round(normalized, 4),
        has_passed=passed,
        reason=verdict.reason,
        metadata={
            "metric": request.evaluation.metric,
            "model": config.model,
            "output_mode": config.output_mode,
            "provider": provider,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "duration_ms": duration_ms,
            **extra,
        },
    )


def _truncate(text: str) -> str:
    if len(text) <= RAW_LIMIT:
        return text
    return text[:RAW_LIMIT] + "…"
