"""The configuration of every metric: what ``evaluation.config`` may say, checked at submit.

Each metric has one pydantic model here (``METRIC_CONFIGS``). A config that does not fit is
refused with the path of the field (``evaluation.config.threshold``); a check that involves
several fields starts its message with the field it objects to (``"method: ..."``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: Metrics computed from the target alone (``type: "rule"``).
RULE_METRICS = (
    "exact_match",
    "regular_expression",
    "schema_validation",
    "length_count",
    "lexical_overlap",
    "numeric_similarity",
)
#: Metrics that call the model provider (``type: "llm"``): judges, and embeddings.
LLM_METRICS = ("binary", "rating", "comparison", "custom", "semantic_similarity")

#: The placeholders a ``custom`` judge's prompt may use, and the target field each one reads.
PROMPT_FIELDS = {
    "input": "input",
    "actual_output": "actual_output",
    "expected_output": "expected_output",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

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
    """Scores how alike actual and expected output are by ``algorithm`` (0..1); passes at
    ``threshold``.

    ``word`` (default): word multisets, by ``method`` (f1, jaccard, recall, precision).
    ``substring``: the expected output inside the output. ``levenshtein``: normalised edit
    similarity. ``rouge``: ROUGE-N (``variant="rouge-n"``, n-grams of ``n`` words) or ROUGE-L
    (``variant="rouge-l"``), by ``method`` (f1, recall, precision).
    """

    algorithm: Literal["word", "substring", "levenshtein", "rouge"] = "word"
    method: Literal["f1", "jaccard", "recall", "precision"] = "f1"
    variant: Literal["rouge-n", "rouge-l"] = "rouge-n"
    n: Annotated[int, Field(ge=1, le=9)] = 1
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _options_fit_the_algorithm(self) -> LexicalOverlapConfig:
        given = self.model_fields_set
        if "method" in given and self.algorithm in ("substring", "levenshtein"):
            raise ValueError(f"method: the {self.algorithm} algorithm has one score, no method")
        if self.algorithm == "rouge" and self.method == "jaccard":
            raise ValueError("method: ROUGE has precision, recall and f1, not jaccard")
        if given & {"variant", "n"} and self.algorithm != "rouge":
            raise ValueError(
                f"{'variant' if 'variant' in given else 'n'}: only the rouge algorithm has it"
            )
        if "n" in given and self.variant == "rouge-l":
            raise ValueError("n: ROUGE-L compares whole word sequences; n is for rouge-n")
        return self


class NumericSimilarityConfig(_Strict):
    """Compares a number found in ``actual_output`` with the number in ``expected_output``.

    ``extract`` picks which number of the output counts (``first``, ``last``, or ``only``: the
    output must hold exactly one). ``pattern``, a regular expression, narrows where to look:
    its first group (or its whole match) must hold the number. Passes when the relative
    difference ``|actual - expected| / |expected|`` is at most ``tolerance``, or the absolute
    difference at most ``absolute_tolerance``; scores ``1 - relative difference`` (at least 0).
    """

    extract: Literal["first", "last", "only"] = "first"
    pattern: str | None = None
    decimal_separator: Literal[".", ","] = "."
    tolerance: Annotated[float, Field(ge=0)] = 0.0
    absolute_tolerance: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("pattern")
    @classmethod
    def _one_group_at_most(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        if compiled.groups > 1:
            raise ValueError(
                f"has {compiled.groups} groups; give at most one, around where the number is"
            )
        return value


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


class ComparisonConfig(LLMJudgeConfig):
    """The judge compares the actual with the expected output and answers
    ``{"score": <0..1>, "reason": str}``; passes when the score reaches ``threshold``."""

    criteria: Annotated[str, Field(min_length=1)] = (
        "The actual output conveys the same meaning and facts as the expected output; "
        "wording may differ."
    )
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


class CustomJudgeConfig(_Strict):
    """The user's own judge prompt and verdict schema.

    ``prompt`` is sent as the user message, with ``{{input}}``, ``{{actual_output}}`` and
    ``{{expected_output}}`` replaced by the target's fields. The judge answers a JSON object
    that must conform to ``verdict_schema`` (JSON Schema, given as ``schema``); its
    ``score_field`` (a number within ``min_score..max_score``) is the score, and it passes when
    the score reaches ``threshold`` (default: the middle of the range) or, with
    ``passed_field``, when that boolean is true. ``reason_field`` is kept as the reason.
    """

    model: Annotated[str, Field(min_length=1)]
    prompt: Annotated[str, Field(min_length=1)]
    verdict_schema: dict[str, Any] = Field(alias="schema")
    score_field: Annotated[str, Field(min_length=1)] = "score"
    passed_field: str | None = None
    reason_field: str | None = "reason"
    min_score: float = 0.0
    max_score: float = 1.0
    threshold: float | None = None
    output_mode: Literal["json", "tools"] = "json"
    provider: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @field_validator("prompt")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = sorted(set(placeholders(value)) - set(PROMPT_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{{{unknown[0]}}}}}; the prompt may use "
                + ", ".join(f"{{{{{name}}}}}" for name in PROMPT_FIELDS)
            )
        if "actual_output" not in placeholders(value):
            raise ValueError("must contain {{actual_output}}, the output being judged")
        return value

    @field_validator("verdict_schema")
    @classmethod
    def _schema_describes_an_object(cls, value: dict[str, Any]) -> dict[str, Any]:
        from workers.evaluations.json_schema import check_schema

        check_schema(value)
        if value.get("type") != "object":
            raise ValueError('$.type: a verdict schema must be "type": "object"')
        return value

    @model_validator(mode="after")
    def _verdict_fields(self) -> CustomJudgeConfig:
        required = self.verdict_schema.get("required", [])
        for key in ("score_field", "passed_field"):
            name = getattr(self, key)
            if name is not None and name not in required:
                raise ValueError(
                    f"{key}: {name!r} must be listed in the verdict schema's required "
                    f"properties (required: {required})"
                )
        if self.min_score >= self.max_score:
            raise ValueError(
                f"min_score: {self.min_score:g} must be below max_score ({self.max_score:g})"
            )
        if self.threshold is not None and not self.min_score <= self.threshold <= self.max_score:
            raise ValueError("threshold: must lie within min_score..max_score")
        return self

    @property
    def pass_score(self) -> float:
        """The score a verdict needs to pass (when ``passed_field`` does not decide)."""
        if self.threshold is not None:
            return self.threshold
        return (self.min_score + self.max_score) / 2


class SemanticSimilarityConfig(_Strict):
    """Cosine similarity of the embeddings of the actual and the expected output, from the
    provider's embeddings API (``model``); passes at ``threshold``."""

    model: Annotated[str, Field(min_length=1)]
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.8
    dimensions: Annotated[int, Field(ge=1)] | None = None
    provider: str | None = None


def placeholders(prompt: str) -> list[str]:
    """The names of the ``{{name}}`` placeholders in ``prompt``, in order."""
    return _PLACEHOLDER.findall(prompt)


def needs_from_target(metric: str, config: BaseModel) -> list[str]:
    """The optional target fields that ``metric`` with ``config`` reads (checked at submit)."""
    if isinstance(config, CustomJudgeConfig):
        used = placeholders(config.prompt)
        return [name for name in ("input", "expected_output") if name in used]
    return ["expected_output"] if metric in _NEEDS_EXPECTED_OUTPUT else []


METRIC_CONFIGS: dict[str, type[BaseModel]] = {
    "exact_match": ExactMatchConfig,
    "regular_expression": RegularExpressionConfig,
    "schema_validation": SchemaValidationConfig,
    "length_count": LengthCountConfig,
    "lexical_overlap": LexicalOverlapConfig,
    "numeric_similarity": NumericSimilarityConfig,
    "binary": BinaryConfig,
    "rating": RatingConfig,
    "comparison": ComparisonConfig,
    "custom": CustomJudgeConfig,
    "semantic_similarity": SemanticSimilarityConfig,
}

_NEEDS_EXPECTED_OUTPUT = frozenset(
    {"exact_match", "lexical_overlap", "numeric_similarity", "comparison", "semantic_similarity"}
)
