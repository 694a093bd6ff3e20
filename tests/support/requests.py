"""Builders of EvaluationRequest payloads for tests."""

from __future__ import annotations

import uuid
from typing import Any


def rule_request(
    pattern: str = "hello", output: str = "hello world", **extra: Any
) -> dict[str, Any]:
    """A regular-expression evaluation with fresh uuids."""
    return {
        "evaluation": {
            "uuid": str(uuid.uuid4()),
            "name": "greets",
            "type": "rule",
            "metric": "regular_expression",
            "config": {"pattern": pattern},
        },
        "target": {"uuid": str(uuid.uuid4()), "actual_output": output},
        **extra,
    }


def llm_request(
    metric: str = "binary",
    *,
    output_mode: str = "json",
    model: str = "judge-small",
    **config: Any,
) -> dict[str, Any]:
    """An LLM-judge evaluation with fresh uuids; ``config`` adds to the judge's configuration."""
    return {
        "evaluation": {
            "uuid": str(uuid.uuid4()),
            "name": "helpful",
            "type": "llm",
            "metric": metric,
            "config": {
                "model": model,
                "criteria": "The answer is helpful.",
                "output_mode": output_mode,
                **config,
            },
        },
        "target": {
            "uuid": str(uuid.uuid4()),
            "input": "How do I reset my password?",
            "actual_output": "Open Settings, then Security, then Reset password.",
        },
    }


def target_of(request: dict[str, Any]) -> str:
    """The X-Evalq-Target value the judge sends for ``request``."""
    return f"{request['evaluation']['uuid']}/{request['target']['uuid']}"
