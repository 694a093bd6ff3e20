from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from workers.evaluations.configs import RatingConfig
from workers.evaluations.models import EvaluationRequest
from workers.requests_file import describe_validation_error


def request(**evaluation: Any) -> dict[str, Any]:
    base = {
        "uuid": str(uuid.uuid4()),
        "name": "e",
        "type": "rule",
        "metric": "exact_match",
        "config": {},
    }
    return {
        "evaluation": {**base, **evaluation},
        "target": {"uuid": str(uuid.uuid4()), "actual_output": "a", "expected_output": "a"},
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        EvaluationRequest.model_validate(data)
    return describe_validation_error(caught.value)


def test_a_valid_request_parses_and_keys_its_result_by_evaluation_and_target() -> None:
    data = request()
    parsed = EvaluationRequest.model_validate(data)
    assert parsed.result_key == (data["evaluation"]["uuid"], data["target"]["uuid"])


def test_a_missing_field_is_named_by_its_path() -> None:
    data = request()
    del data["target"]["actual_output"]
    assert "target.actual_output: Field required" in error_of(data)


def test_a_malformed_uuid_is_named_by_its_path() -> None:
    assert error_of(request(uuid="not-a-uuid")).startswith("evaluation.uuid:")


def test_an_llm_metric_on_a_rule_evaluation_is_rejected_with_the_allowed_metrics() -> None:
    message = error_of(request(metric="binary"))
    assert "metric 'binary' is not a rule metric" in message
    assert "exact_match" in message


def test_an_unknown_config_key_is_named_under_evaluation_config() -> None:
    assert "evaluation.config.case_sensitiv: Extra inputs are not permitted" in error_of(
        request(config={"case_sensitiv": False})
    )


def test_a_bad_regular_expression_is_rejected_at_validation_time() -> None:
    message = error_of(request(metric="regular_expression", config={"pattern": "(unclosed"}))
    assert "evaluation.config.pattern" in message
    assert "not a valid regular expression" in message


def test_metrics_that_compare_need_an_expected_output() -> None:
    data = request()
    del data["target"]["expected_output"]
    assert "target.expected_output is required by metric 'exact_match'" in error_of(data)


def test_an_llm_config_needs_model_and_criteria() -> None:
    message = error_of(request(type="llm", metric="binary", config={"model": "m"}))
    assert "evaluation.config.criteria: Field required" in message


def test_a_rating_scale_must_go_upwards() -> None:
    message = error_of(
        request(
            type="llm",
            metric="rating",
            config={"model": "m", "criteria": "c", "min_rating": 5, "max_rating": 1},
        )
    )
    assert "min_rating (5) must be below max_rating (1)" in message


def test_the_default_pass_rating_is_the_upper_half_of_the_scale() -> None:
    assert RatingConfig(model="m", criteria="c").effective_pass_rating == 3
    assert (
        RatingConfig(model="m", criteria="c", min_rating=0, max_rating=10).effective_pass_rating
        == 5
    )
    assert RatingConfig(model="m", criteria="c", pass_rating=4).effective_pass_rating == 4


def test_the_default_idempotency_key_is_stable_for_the_same_pair() -> None:
    data = request()
    first = EvaluationRequest.model_validate(data).default_idempotency_key()
    second = EvaluationRequest.model_validate(data).default_idempotency_key()
    data["target"]["uuid"] = str(uuid.uuid4())
    other = EvaluationRequest.model_validate(data).default_idempotency_key()
    assert first == second != other
