"""The README's metric section: every example config is a valid request, and every metric has
one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from workers.evaluations.configs import METRIC_CONFIGS
from workers.evaluations.models import EvaluationRequest

README = Path(__file__).resolve().parents[4] / "README.md"


def readme_examples() -> list[dict[str, Any]]:
    """The evaluations in the README's ```jsonc block, one per entry (continuation lines joined)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("```jsonc\n", 1)[1].split("```", 1)[0]
    entries: list[str] = []
    for line in block.splitlines():
        if line.startswith("{") or not entries:
            entries.append(line)
        else:
            entries[-1] += line
    return [json.loads(entry) for entry in entries]


def test_every_readme_example_is_a_valid_request() -> None:
    for evaluation in readme_examples():
        EvaluationRequest.model_validate(
            {
                "evaluation": {"uuid": str(uuid.uuid4()), "name": "example", **evaluation},
                "target": {
                    "uuid": str(uuid.uuid4()),
                    "input": "question",
                    "actual_output": "Answer: 4",
                    "expected_output": "4",
                },
            }
        )


def test_every_metric_has_a_readme_example() -> None:
    assert {example["metric"] for example in readme_examples()} == set(METRIC_CONFIGS)
