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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workers.evaluations.configs import (
    LLM_METRICS,
    METRIC_CONFIGS,
    RULE_METRICS,
    needs_from_target,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
            other = "llm" if self.type == "rule" else "rule"
            hint = (
                f' (it is an {other} metric: set "type": "{other}")'
                if self.metric in (LLM_METRICS if other == "llm" else RULE_METRICS)
                else ""
            )
            raise ValueError(
                f"metric {self.metric!r} is not a {self.type} metric{hint}; "
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
        metric = self.evaluation.metric
        try:
            config = METRIC_CONFIGS[metric].model_validate(self.evaluation.config)
        except ValidationError as error:
            # Re-raised with the full path so the user sees evaluation.config.<field>.
            raise ValueError(_config_errors(error)) from None
        for field in needs_from_target(metric, config):
            if getattr(self.target, field) is None:
                raise ValueError(f"target.{field} is required by metric {metric!r}")
        if metric == "numeric_similarity":
            _expected_number(self.target.expected_output or "", config)
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
        message = item["msg"].removeprefix("Value error, ")
        if not where and _NAMED_FIELD.match(message):
            # A check over several fields names the one it objects to first (configs.py).
            parts.append(f"evaluation.config.{message}")
            continue
        path = f"evaluation.config.{where}" if where else "evaluation.config"
        parts.append(f"{path}: {message}")
    return "; ".join(parts)


_NAMED_FIELD = re.compile(r"[a-z_]+: ")


def _expected_number(expected: str, config: Any) -> float:
    """The one number ``expected`` holds, or ValueError naming target.expected_output."""
    from workers.evaluations.numeric import find_numbers

    found = find_numbers(expected, config.decimal_separator)
    if len(found) != 1:
        how = "no number" if not found else f"{len(found)} numbers"
        raise ValueError(
            f"target.expected_output: holds {how} ({expected[:60]!r}); numeric_similarity needs "
            f"exactly one, written with decimal separator {config.decimal_separator!r}"
        )
    return found[0][1]


# --- result --------------------------------------------------------------------------------


class EvaluationResult(BaseModel):
    """The outcome of one evaluation of one target, stored under (evaluation uuid, target uuid)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    evaluation_uuid: str
    target_uuid: str
    score: float
    normalized_score: Annotated[float, Field(ge=0, le=100)]
    has_passed: bool
    reason: str
    metadata: dict[str, Any] = Field(default_factory=dict)
