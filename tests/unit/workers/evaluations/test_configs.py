"""Submit-time checks of the new metrics' configurations: a bad config names its field."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from workers.evaluations.configs import CustomJudgeConfig
from workers.evaluations.llm_judge import build_messages, verdict_schema
from workers.evaluations.models import EvaluationRequest
from workers.requests_file import read_requests

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}


def request(
    metric: str, config: dict[str, Any], type_: str = "llm", **target: Any
) -> EvaluationRequest:
    return EvaluationRequest.model_validate(
        {
            "evaluation": {
                "uuid": str(uuid.uuid4()),
                "name": "n",
                "type": type_,
                "metric": metric,
                "config": config,
            },
            "target": {"uuid": str(uuid.uuid4()), "actual_output": "out", **target},
        }
    )


def refusal(metric: str, config: dict[str, Any], type_: str = "llm", **target: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        request(metric, config, type_, **target)
    return str(caught.value)


def custom(**config: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "Judge: {{actual_output}}", "schema": SCHEMA, **config}


def test_semantic_similarity_is_an_llm_metric_and_says_so_when_typed_rule() -> None:
    message = refusal("semantic_similarity", {"model": "e"}, type_="rule", expected_output="x")
    assert 'it is an llm metric: set "type": "llm"' in message


@pytest.mark.parametrize("metric", ["semantic_similarity", "comparison"])
def test_metrics_that_compare_need_an_expected_output(metric: str) -> None:
    message = refusal(metric, {"model": "m"})
    assert f"target.expected_output is required by metric {metric!r}" in message


def test_a_semantic_threshold_outside_zero_to_one_is_refused() -> None:
    message = refusal("semantic_similarity", {"model": "e", "threshold": 1.5}, expected_output="x")
    assert "evaluation.config.threshold" in message


def test_a_custom_prompt_with_an_unknown_placeholder_is_refused() -> None:
    message = refusal("custom", custom(prompt="{{actual_output}} vs {{reference}}"))
    assert "evaluation.config.prompt: unknown placeholder {{reference}}" in message


def test_a_custom_prompt_without_the_actual_output_is_refused() -> None:
    assert "must contain {{actual_output}}" in refusal("custom", custom(prompt="Hello"))


def test_a_custom_prompt_using_the_expected_output_needs_one_in_the_target() -> None:
    config = custom(prompt="{{actual_output}} / {{expected_output}}")
    assert "target.expected_output is required by metric 'custom'" in refusal("custom", config)
    assert request("custom", config, expected_output="ref")


def test_a_custom_verdict_schema_must_be_valid_json_schema_describing_an_object() -> None:
    assert "evaluation.config.schema: $.type" in refusal("custom", custom(schema={"type": "nope"}))
    assert 'must be "type": "object"' in refusal("custom", custom(schema={"type": "array"}))


def test_a_custom_score_field_must_be_required_by_the_verdict_schema() -> None:
    message = refusal("custom", custom(score_field="grade"))
    assert "evaluation.config.score_field: 'grade' must be listed" in message


def test_a_custom_threshold_must_lie_in_the_score_range() -> None:
    message = refusal("custom", custom(max_score=10, threshold=11))
    assert "evaluation.config.threshold: must lie within min_score..max_score" in message
    assert CustomJudgeConfig.model_validate(custom(max_score=10)).pass_score == 5


def test_a_custom_prompt_is_rendered_with_the_targets_fields_and_braces_kept() -> None:
    config = custom(prompt='Q: {{ input }}\nA: {{actual_output}}\nReply like {"score": 1}')
    built = request("custom", config, input="2+2?")

    system, user = build_messages(built, built.evaluation.parsed_config())

    assert user["content"] == 'Q: 2+2?\nA: out\nReply like {"score": 1}'
    assert "conforming to this JSON schema" in str(system["content"])


def test_a_custom_judges_tool_parameters_are_the_users_schema() -> None:
    built = request("custom", custom(output_mode="tools"))
    assert verdict_schema(built.evaluation.parsed_config()) == SCHEMA


def test_submit_reports_each_bad_new_metric_line_by_number_and_field(tmp_path: Path) -> None:
    def line(metric: str, type_: str, config: dict[str, Any], **target: Any) -> str:
        evaluation = {"uuid": str(uuid.uuid4()), "name": "n", "type": type_, "metric": metric}
        target = {"uuid": str(uuid.uuid4()), "actual_output": "42", **target}
        return json.dumps({"evaluation": {**evaluation, "config": config}, "target": target})

    path = tmp_path / "requests.jsonl"
    lines = [
        line(
            "lexical_overlap",
            "rule",
            {"algorithm": "rouge", "method": "jaccard"},
            expected_output="x",
        ),
        line("numeric_similarity", "rule", {"tolerance": -1}, expected_output="42"),
        line("schema_validation", "rule", {"schema": {"$ref": "https://example.com/s.json"}}),
        line("semantic_similarity", "llm", {"model": ""}, expected_output="x"),
        line("custom", "llm", custom(prompt="{{actual_output}} {{nope}}")),
        line("numeric_similarity", "rule", {}, expected_output="42"),
    ]
    path.write_text("\n".join(lines) + "\n")

    requests, errors = read_requests(path)

    assert [number for number, _ in requests] == [6]
    assert [str(error) for error in errors] == [
        f"{path}:1: evaluation.config.method: ROUGE has precision, recall and f1, not jaccard",
        f"{path}:2: evaluation.config.tolerance: Input should be greater than or equal to 0",
        f"{path}:3: evaluation.config.schema: $.$ref: cannot resolve 'https://example.com/s.json':"
        " references must point inside the schema (for example '#/$defs/item'); remote"
        " references are not fetched",
        f"{path}:4: evaluation.config.model: String should have at least 1 character",
        f"{path}:5: evaluation.config.prompt: unknown placeholder {{{{nope}}}}; the prompt may use"
        " {{input}}, {{actual_output}}, {{expected_output}}",
    ]
