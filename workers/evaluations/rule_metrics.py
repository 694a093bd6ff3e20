"""Rule metrics: deterministic scores computed from the target alone, no model call.

:func:`score_rule` picks the metric named by the request; each metric is a pure function of the
request and its typed configuration. They never raise because of what the model wrote (empty,
unicode, huge or malformed output is a scored result); they raise ``ValueError`` only for a
request that should never have been sent to them (not a rule metric, missing expected output).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from workers.evaluations import json_schema, numeric, text_similarity
from workers.evaluations.configs import (
    RULE_METRICS,
    ExactMatchConfig,
    LengthCountConfig,
    LexicalOverlapConfig,
    NumericSimilarityConfig,
    RegularExpressionConfig,
    SchemaValidationConfig,
)
from workers.evaluations.models import EvaluationRequest, EvaluationResult

#: How many schema violations the reason lists, and how many the metadata keeps.
REASON_VIOLATIONS = 3
METADATA_VIOLATIONS = 20

_SENTENCE_END = re.compile(r"[.!?]+")


def score_rule(request: EvaluationRequest) -> EvaluationResult:
    """Score ``request`` with its rule metric."""
    metric = request.evaluation.metric
    scorer = _SCORERS.get(metric)
    if scorer is None:
        raise ValueError(
            f"metric {metric!r} is not a rule metric; rule metrics are: {', '.join(RULE_METRICS)}"
        )
    return scorer(request, request.evaluation.parsed_config())


def exact_match(request: EvaluationRequest, config: ExactMatchConfig) -> EvaluationResult:
    """Score 1 when the output equals the expected output, else 0.

    ``strip_whitespace`` ignores leading and trailing whitespace; without ``case_sensitive`` both
    sides are case-folded (so ``"STRASSE"`` equals ``"straße"``).
    """
    actual, expected = request.target.actual_output, _expected_output(request)
    if config.strip_whitespace:
        actual, expected = actual.strip(), expected.strip()
    if not config.case_sensitive:
        actual, expected = actual.casefold(), expected.casefold()
    passed = actual == expected
    rules = ", ".join(
        ["case-sensitive" if config.case_sensitive else "case-insensitive"]
        + (["surrounding whitespace ignored"] if config.strip_whitespace else [])
    )
    if passed:
        reason, difference = f"output equals the expected output ({rules})", None
    else:
        difference = len(_common_prefix(actual, expected))
        reason = (
            f"output differs from the expected output at character {difference} ({rules}): "
            f"got {_clip(actual[difference:])!r}, expected {_clip(expected[difference:])!r}"
        )
    return _result(
        request,
        score=float(passed),
        normalized_score=100.0 * passed,
        has_passed=passed,
        reason=reason,
        first_difference=difference,
        case_sensitive=config.case_sensitive,
        strip_whitespace=config.strip_whitespace,
    )


def regular_expression(
    request: EvaluationRequest, config: RegularExpressionConfig
) -> EvaluationResult:
    """Score 1 when ``pattern`` is found in the output (or matches all of it: ``full_match``)."""
    pattern = re.compile(config.pattern, re.IGNORECASE if config.ignore_case else 0)
    output = request.target.actual_output
    match = pattern.fullmatch(output) if config.full_match else pattern.search(output)
    shown = f"'{_clip(config.pattern)}'"  # as written, not as a Python repr
    if match is None:
        how = "does not match in full" if config.full_match else "is not found in the output"
        reason = f"pattern {shown} {how} ({_plural(len(output), 'character')})"
    elif config.full_match:
        reason = f"output matches pattern {shown} in full"
    else:
        reason = (
            f"pattern {shown} found at characters {match.start()}..{match.end()}: "
            f"{_clip(match.group())!r}"
        )
    return _result(
        request,
        score=float(match is not None),
        normalized_score=0.0 if match is None else 100.0,
        has_passed=match is not None,
        reason=reason,
        pattern=config.pattern,
        ignore_case=config.ignore_case,
        full_match=config.full_match,
        match=None if match is None else _clip(match.group(), 200),
        span=None if match is None else [match.start(), match.end()],
    )


def schema_validation(
    request: EvaluationRequest, config: SchemaValidationConfig
) -> EvaluationResult:
    """Score 1 when the output parses as JSON and conforms to the schema, else 0.

    The output must be strict JSON: ``NaN`` and ``Infinity`` are refused, and nothing around the
    document (such as a Markdown code fence) is removed.
    """
    reason, valid_json, violations = _check_document(request.target.actual_output, config)
    passed = valid_json and not violations
    return _result(
        request,
        score=float(passed),
        normalized_score=100.0 if passed else 0.0,
        has_passed=passed,
        reason=reason,
        valid_json=valid_json,
        violation_count=len(violations),
        check_formats=config.check_formats,
        violations=[str(v) for v in violations[:METADATA_VIOLATIONS]],
        violation_paths=[v.path for v in violations[:METADATA_VIOLATIONS]],
    )


def _check_document(
    output: str, config: SchemaValidationConfig
) -> tuple[str, bool, list[json_schema.Violation]]:
    """(reason, whether the output is JSON, the schema's violations) for one output."""
    try:
        document = json.loads(output, parse_constant=_refuse_constant)
    except ValueError as error:
        return f"output is not valid JSON: {error}", False, []
    except RecursionError:
        return "output is not valid JSON: nested too deeply to parse", False, []
    try:
        violations = json_schema.validate(
            document, config.json_schema, check_formats=config.check_formats
        )
    except RecursionError:
        reason = "output is nested too deeply to validate against the schema"
        return reason, True, [json_schema.Violation("$", reason)]
    if not violations:
        return "output is valid JSON and conforms to the schema", True, []
    listed = "; ".join(str(v) for v in violations[:REASON_VIOLATIONS])
    more = len(violations) - REASON_VIOLATIONS
    reason = f"output violates the schema in {_plural(len(violations), 'place')}: {listed}"
    return reason + (f"; and {more} more" if more > 0 else ""), True, violations


def length_count(request: EvaluationRequest, config: LengthCountConfig) -> EvaluationResult:
    """Score the length of the output in ``unit``; pass when it lies within ``[min, max]``.

    Characters are code points (whitespace included), words are whitespace-separated tokens and
    sentences are the non-blank pieces between runs of ``.``, ``!`` and ``?`` (so a text without
    a full stop is one sentence, and an empty one has none).

    ``score`` is the count. ``normalized_score`` is 100 within the bounds; outside them it is the
    ratio of the count to the bound it missed, taken the way that lies below 1:
    ``100 * count / min`` when too short, ``100 * max / count`` when too long. Half the minimum
    and twice the maximum both score 50; an empty output under a minimum and any output over a
    maximum of 0 score 0.
    """
    count = _measure(request.target.actual_output, config.unit)
    low, high = config.min, config.max
    allowed = _describe_bounds(low, high)
    measured = f"output has {_plural(count, config.unit.removesuffix('s'))}"
    if low is not None and count < low:
        normalized, passed = 100.0 * count / low, False
        reason = f"{measured}; allowed {allowed} ({low - count} too few)"
    elif high is not None and count > high:
        normalized, passed = 100.0 * high / count, False
        reason = f"{measured}; allowed {allowed} ({count - high} too many)"
    else:
        normalized, passed = 100.0, True
        reason = f"{measured}, within the allowed {allowed}"
    return _result(
        request,
        score=float(count),
        normalized_score=normalized,
        has_passed=passed,
        reason=reason,
        unit=config.unit,
        count=count,
        min=low,
        max=high,
    )


def _describe_bounds(low: int | None, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    return f"at most {high}" if low is None else f"{low}..{high}"


def _measure(text: str, unit: str) -> int:
    if unit == "characters":
        return len(text)
    if unit == "words":
        return len(text.split())
    return sum(1 for piece in _SENTENCE_END.split(text) if piece.strip())


def lexical_overlap(request: EvaluationRequest, config: LexicalOverlapConfig) -> EvaluationResult:
    """Score how alike the output and the expected output are by ``algorithm`` (0..1).

    ``word``: words as multisets, by ``method`` (precision = shared / output words, recall =
    shared / expected words, f1 their harmonic mean, jaccard = shared / union). ``rouge``:
    ROUGE-N over n-grams of ``n`` words or ROUGE-L over the longest common word subsequence, by
    ``method``. ``substring`` and ``levenshtein`` compare characters. The measures are defined
    in ``workers.evaluations.text_similarity``.
    """
    actual, expected = request.target.actual_output, _expected_output(request)
    if config.algorithm in ("word", "rouge"):
        score, figures, detail = _token_overlap(actual, expected, config)
    else:
        actual = text_similarity.normalise(actual, config.case_sensitive)
        expected = text_similarity.normalise(expected, config.case_sensitive)
        if config.algorithm == "substring":
            score = text_similarity.substring_similarity(actual, expected)
            figures = {"contains": expected in actual}
            detail = (
                "the expected output appears in the output"
                if expected in actual
                else "closest match of the expected output inside the output"
            )
        else:
            score, distance = text_similarity.levenshtein_similarity(actual, expected)
            figures = {"distance": distance}
            detail = f"{_plural(distance, 'edit')} over {max(len(actual), len(expected))} chars"
    passed = score >= config.threshold
    measure = _measure_name(config)
    verdict = "at least" if passed else "below"
    reason = f"{measure} {score:.2f} is {verdict} the threshold {config.threshold:.2f}: {detail}"
    return _result(
        request,
        score=score,
        normalized_score=min(100.0, max(0.0, 100.0 * score)),
        has_passed=passed,
        reason=reason,
        algorithm=config.algorithm,
        measure=measure,
        threshold=config.threshold,
        case_sensitive=config.case_sensitive,
        **figures,
    )


def _token_overlap(
    actual: str, expected: str, config: LexicalOverlapConfig
) -> tuple[float, dict[str, Any], str]:
    """(score, metadata figures, the reason's detail) of a word or ROUGE measure."""
    output = text_similarity.words(actual, config.case_sensitive)
    reference = text_similarity.words(expected, config.case_sensitive)
    figures: dict[str, Any] = {}
    if config.algorithm == "word":
        found = text_similarity.word_overlap(output, reference)
        unit, shared_key, shared = "word", "shared_words", f"{_plural(found.shared, 'shared word')}"
        figures["jaccard"] = found.jaccard
    elif config.variant == "rouge-l":
        found = text_similarity.rouge_l(output, reference)
        unit, shared_key = "word", "lcs_words"
        shared = f"longest common subsequence of {_plural(found.shared, 'word')}"
    else:
        found = text_similarity.rouge_n(output, reference, config.n)
        unit, shared_key = f"{config.n}-gram", "shared_ngrams"
        shared = _plural(found.shared, f"shared {config.n}-gram")
        figures["n"] = config.n
    key = "words" if unit == "word" else "ngrams"
    figures |= {
        "method": config.method,
        "precision": found.precision,
        "recall": found.recall,
        "f1": found.f1,
        shared_key: found.shared,
        f"output_{key}": found.output,
        f"expected_{key}": found.expected,
    }
    detail = "neither text has any words"
    if output or reference:
        detail = (
            f"{shared}; the output has {_plural(found.output, unit)}, the expected output "
            f"{found.expected} (precision {found.precision:.2f}, recall {found.recall:.2f})"
        )
    return float(figures[config.method]), figures, detail


def _measure_name(config: LexicalOverlapConfig) -> str:
    if config.algorithm == "word":
        return config.method
    if config.algorithm == "rouge":
        variant = "ROUGE-L" if config.variant == "rouge-l" else f"ROUGE-{config.n}"
        return f"{variant} {config.method}"
    return f"{config.algorithm} similarity"


def numeric_similarity(
    request: EvaluationRequest, config: NumericSimilarityConfig
) -> EvaluationResult:
    """Score a number in the output against the expected output's number.

    Passes within ``tolerance`` (relative to the expected value) or ``absolute_tolerance``;
    ``score`` is ``1 - relative difference``, at least 0. An output without a usable number
    scores 0 with the reason saying why.
    """
    expected_text = _expected_output(request)
    ((_, expected),) = numeric.find_numbers(expected_text, config.decimal_separator)
    written, problem = numeric.extract_number(
        request.target.actual_output,
        extract=config.extract,
        pattern=config.pattern,
        decimal_separator=config.decimal_separator,
    )
    figures: dict[str, Any] = {"expected": expected, "extract": config.extract}
    if written is None:
        return _result(
            request, score=0.0, normalized_score=0.0, has_passed=False, reason=problem, **figures
        )
    actual = numeric.parse_number(written, config.decimal_separator)
    relative = numeric.relative_difference(actual, expected)
    absolute = abs(actual - expected)
    passed = relative <= config.tolerance or absolute <= config.absolute_tolerance
    score = max(0.0, 1.0 - relative)
    allowed = f"tolerance {config.tolerance:g}"
    if config.absolute_tolerance:
        allowed += f" or absolute {config.absolute_tolerance:g}"
    reason = (
        f"found {written} ({problem}), expected {expected:g}: relative difference "
        f"{relative:.4g} is {'within' if passed else 'outside'} the {allowed}"
    )
    return _result(
        request,
        score=score,
        normalized_score=100.0 * score,
        has_passed=passed,
        reason=reason,
        actual=actual,
        relative_difference=None if relative == float("inf") else relative,
        absolute_difference=absolute,
        tolerance=config.tolerance,
        absolute_tolerance=config.absolute_tolerance,
        **figures,
    )


# --- shared --------------------------------------------------------------------------------


_SCORERS: dict[str, Callable[[EvaluationRequest, Any], EvaluationResult]] = {
    "exact_match": exact_match,
    "regular_expression": regular_expression,
    "schema_validation": schema_validation,
    "length_count": length_count,
    "lexical_overlap": lexical_overlap,
    "numeric_similarity": numeric_similarity,
}


def _result(
    request: EvaluationRequest,
    *,
    score: float,
    normalized_score: float,
    has_passed: bool,
    reason: str,
    **figures: Any,
) -> EvaluationResult:
    evaluation_uuid, target_uuid = request.result_key
    return EvaluationResult(
        evaluation_uuid=evaluation_uuid,
        target_uuid=target_uuid,
        score=score,
        normalized_score=normalized_score,
        has_passed=has_passed,
        reason=reason,
        metadata={"metric": request.evaluation.metric, **figures},
    )


def _expected_output(request: EvaluationRequest) -> str:
    if request.target.expected_output is None:
        raise ValueError(
            f"target.expected_output is required by metric {request.evaluation.metric!r}"
        )
    return request.target.expected_output


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _common_prefix(left: str, right: str) -> str:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return left[:index]
    return left[: min(len(left), len(right))]


def _clip(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # Lone surrogates are valid in a str but not in UTF-8: escape them so the result stores.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
