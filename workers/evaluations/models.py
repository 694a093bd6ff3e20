"""The evaluation contract: what a job receives (EvaluationRequest) and stores (EvaluationResult).

Every request is validated in full before anything is enqueued, including the metric's own
configuration, so a typo in a config key is reported at submit time with the field's path
(``evaluation.config.pattern``), not later as a failed job.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

RULE_METRICS = (
    "exact_match",
    "regular_expression",
    "schema_validation",
    "length_count",
    "lexical_overlap",
)
LLM_METRICS = ("binary", "rating")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- metric configurations -------------------------------------------------------------------


class ExactMatchConfig(_Strict):
    """Passes when ``actual_output`` equals ``expected_output``."""

    case_sensitive: bool = True
    strip_whitespace: bool = True


class RegularExpressionConfig(_Strict):
    """Passes when ``pattern`` is found in ``actual_output`` (or matches all of it)."""

    pattern: str
    ignore_case: bool = False
    full_match: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        return value


class SchemaValidationConfig(_Strict):
    """Passes when ``actual_output`` is JSON that conforms to ``json_schema`` (Draft 2020-12,
    ``$ref`` within the schema only; ``format`` is checked only with ``check_formats``)."""

    # Declared first: the schema's check below depends on it.
    check_formats: bool = False
    json_schema: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("json_schema")
    @classmethod
    def _schema_is_usable(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from workers.evaluations.json_schema import check_schema

        check_schema(value, check_formats=bool(info.data.get("check_formats")))
        return value


class LengthCountConfig(_Strict):
    """Passes when the length of ``actual_output`` (in ``unit``) lies within ``[min, max]``."""

    unit: Literal["characters", "words", "sentences"] = "words"
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> LengthCountConfig:
        if self.min is None and self.max is None:
            raise ValueError("give at least one of min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class LexicalOverlapConfig(_Strict):
    """Scores the word overlap of actual and expected output; passes at ``threshold``."""

    method: Literal["f1", "jaccard", "recall", "precision"] = "f1"
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    case_sensitive: bool = False


class LLMJudgeConfig(_Strict):
    """Configuration shared by the LLM-as-judge metrics."""

    model: Annotated[str, Field(min_length=1)]
    criteria: Annotated[str, Field(min_length=1)]
    output_mode: Literal["json", "tools"] = "json"
    provider: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0


class BinaryConfig(LLMJudgeConfig):
    """The judge answers ``{"passed": bool, "reason": str}``."""


class RatingConfig(LLMJudgeConfig):
    """The judge answers ``{"rating": int, "reason": str}`` within ``min_rating..max_rating``.

    A rating passes when it reaches ``pass_rating`` (default: the upper half of the scale).
    """

    min_rating: int = 1
    max_rating: int = 5
    pass_rating: int | None = None

    @model_validator(mode="after")
    def _scale(self) -> RatingConfig:
        if self.min_rating >= self.max_rating:
            raise ValueError(
                f"min_rating ({self.min_rating}) must be below max_rating ({self.max_rating})"
            )
        if self.pass_rating is not None and not (
            self.min_rating <= self.pass_rating <= self.max_rating
        ):
            raise ValueError("pass_rating must lie within min_rating..max_rating")
        return self

    @property
    def effective_pass_rating(self) -> int:
        if self.pass_rating is not None:
            return self.pass_rating
        return self.min_rating + -(-(self.max_rating - self.min_rating) // 2)


METRIC_CONFIGS: dict[str, type[BaseModel]] = {
    "exact_match": ExactMatchConfig,
    "regular_expression": RegularExpressionConfig,
    "schema_validation": SchemaValidationConfig,
    "length_count": LengthCountConfig,
    "lexical_overlap": LexicalOverlapConfig,
    "binary": BinaryConfig,
    "rating": RatingConfig,
}

#: Metrics that need ``target.expected_output``.
NEEDS_EXPECTED_OUTPUT = frozenset({"exact_match", "lexical_overlap"})


# --- request -------------------------------------------------------------------------------


class Evaluation(_Strict):
    """What to evaluate with: a rule metric or an LLM judge, and its configuration."""

    uuid: UUID
    name: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["rule", "llm"]
    metric: str
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _metric_fits_type(self) -> Evaluation:
        allowed = RULE_METRICS if self.type == "rule" else LLM_METRICS
        if self.metric not in allowed:
            raise ValueError(
                f"metric {self.metric!r} is not a {self.type} metric; "
                f"{self.type} metrics are: {', '.join(allowed)}"
            )
        return self

    def parsed_config(self) -> Any:
        """The configuration as its metric's typed model (validated already at construction)."""
        return METRIC_CONFIGS[self.metric].model_validate(self.config)


class Target(_Strict):
    """What is evaluated: the model's actual output, with its input and the expected output."""

    uuid: UUID
    input: str | None = None
    actual_output: str
    expected_output: str | None = None


class EvaluationRequest(_Strict):
    """One evaluation of one target: the payload of every evaluation job."""

    evaluation: Evaluation
    target: Target
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _config_is_valid(self) -> EvaluationRequest:
        config_model = METRIC_CONFIGS[self.evaluation.metric]
        try:
            config_model.model_validate(self.evaluation.config)
        except ValidationError as error:
            # Re-raised with the full path so the user sees evaluation.config.<field>.
            raise ValueError(_config_errors(error)) from None
        if self.evaluation.metric in NEEDS_EXPECTED_OUTPUT and self.target.expected_output is None:
            raise ValueError(
                f"target.expected_output is required by metric {self.evaluation.metric!r}"
            )
        return self

    @property
    def result_key(self) -> tuple[str, str]:
        """The identity of this evaluation's result: (evaluation uuid, target uuid)."""
        return str(self.evaluation.uuid), str(self.target.uuid)

    def default_idempotency_key(self) -> str:
        """A stable key for this (evaluation, target) pair, used when the caller gives none."""
        evaluation, target = self.result_key
        return hashlib.sha256(f"{evaluation}:{target}".encode()).hexdigest()[:32]


def _config_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        path = f"evaluation.config.{where}" if where else "evaluation.config"
        parts.append(f"{path}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


# --- result --------------------------------------------------------------------------------


class EvaluationResult(BaseModel):
    """The outcome of one evaluation of one target, stored under (evaluation uuid, target uuid)."""

    model_config = ConfigDict(extra="forbid")

    evaluation_uuid: str
    target_uuid: str
    score: float
    normalized_score: Annotated[float, Field(ge=0, le=100)]
    has_passed: bool
    reason: str
    metadata: dict[str, Any] = Field(default_factory=dict)
