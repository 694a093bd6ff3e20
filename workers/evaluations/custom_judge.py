"""The ``custom`` LLM judge's own parts: the user's prompt template and the user's verdict.

Pure functions; ``workers.evaluations.llm_judge`` sends the request and turns a verdict that
does not fit into ``JudgeOutputError`` (category ``invalid_model_output``).

- The prompt is the user message, with ``{{input}}``, ``{{actual_output}}`` and
  ``{{expected_output}}`` replaced by the target's fields (nothing else is interpreted, so a
  prompt may contain JSON or braces freely).
- The verdict must conform to the user's JSON schema (validated with ``jsonschema``, as
  ``schema_validation`` does); its score field must then be a number within the configured
  range and its passed field, when configured, a boolean.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from workers.evaluations import json_schema
from workers.evaluations.configs import PROMPT_FIELDS, CustomJudgeConfig
from workers.evaluations.models import Target

#: How many schema violations a bad verdict's error lists.
LISTED_VIOLATIONS = 3

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class CustomVerdict:
    """A custom judge's answer, checked against its schema, with what evalq reads from it."""

    data: dict[str, Any]
    score: float
    passed: bool
    reason: str


def render_prompt(prompt: str, target: Target) -> str:
    """``prompt`` with each placeholder replaced by its target field ("" when absent)."""

    def field(match: re.Match[str]) -> str:
        value = getattr(target, PROMPT_FIELDS[match.group(1)])
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(field, prompt)


def schema_instruction(config: CustomJudgeConfig) -> str:
    """The verdict's JSON schema as the system prompt states it (one line of JSON)."""
    return json.dumps(config.verdict_schema, ensure_ascii=False)


def read_verdict(data: dict[str, Any], config: CustomJudgeConfig) -> CustomVerdict:
    """Check ``data`` against the verdict schema and read its score, pass and reason.

    Raises ValueError saying what does not fit (the caller makes it a JudgeOutputError).
    """
    violations = json_schema.validate(data, config.verdict_schema)
    if violations:
        listed = "; ".join(str(v) for v in violations[:LISTED_VIOLATIONS])
        more = len(violations) - LISTED_VIOLATIONS
        raise ValueError(
            f"the judge's answer does not fit the verdict schema: {listed}"
            + (f"; and {more} more" if more > 0 else "")
        )
    score = data.get(config.score_field)
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ValueError(f"the verdict's {config.score_field!r} is not a number: {score!r}")
    if not config.min_score <= score <= config.max_score:
        raise ValueError(
            f"the verdict's {config.score_field!r} ({score:g}) is outside "
            f"{config.min_score:g}..{config.max_score:g}"
        )
    if config.passed_field is not None:
        passed = data.get(config.passed_field)
        if not isinstance(passed, bool):
            raise ValueError(f"the verdict's {config.passed_field!r} is not a boolean: {passed!r}")
    else:
        passed = score >= config.pass_score
    reason = data.get(config.reason_field) if config.reason_field else None
    if not isinstance(reason, str) or not reason:
        reason = f"the judge's {config.score_field} is {score:g}"
    return CustomVerdict(data=data, score=float(score), passed=passed, reason=reason)


def normalized(verdict: CustomVerdict, config: CustomJudgeConfig) -> float:
    """The verdict's score on 0..100 over ``min_score..max_score``."""
    return (verdict.score - config.min_score) / (config.max_score - config.min_score) * 100
