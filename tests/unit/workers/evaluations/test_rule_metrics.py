"""Rule metrics: what each one scores, when it passes, and what its result says."""

from __future__ import annotations

import json
import unicodedata
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from workers.evaluations.models import EvaluationRequest, EvaluationResult
from workers.evaluations.rule_metrics import score_rule


def make_request(
    metric: str,
    actual_output: str,
    expected_output: str | None = None,
    type_: str = "rule",
    **config: Any,
) -> EvaluationRequest:
    target: dict[str, Any] = {"uuid": str(uuid.uuid4()), "actual_output": actual_output}
    if expected_output is not None:
        target["expected_output"] = expected_output
    return EvaluationRequest.model_validate(
        {
            "evaluation": {
                "uuid": str(uuid.uuid4()),
                "name": f"{metric} check",
                "type": type_,
                "metric": metric,
                "config": config,
            },
            "target": target,
        }
    )


def score(
    metric: str, actual_output: str, expected_output: str | None = None, **config: Any
) -> EvaluationResult:
    return score_rule(make_request(metric, actual_output, expected_output, **config))


# --- dispatch and the result contract ------------------------------------------------------


def test_the_result_is_keyed_by_the_evaluation_and_target_uuids() -> None:
    request = make_request("exact_match", "yes", "yes")
    result = score_rule(request)
    assert (result.evaluation_uuid, result.target_uuid) == request.result_key
    assert result.metadata["metric"] == "exact_match"


def test_an_llm_metric_is_refused_with_a_value_error() -> None:
    request = make_request("binary", "yes", type_="llm", model="m", criteria="is it polite?")
    with pytest.raises(ValueError, match="'binary' is not a rule metric"):
        score_rule(request)


def test_a_metric_that_does_not_fit_the_type_is_rejected_at_validation_time() -> None:
    with pytest.raises(ValidationError, match="metric 'binary' is not a rule metric"):
        make_request("binary", "yes")


ODD_OUTPUTS = [
    "",
    "   \n\t ",
    "\x00\x01",
    "😀 ünïcödé テキスト 文本 ✓",
    "word " * 200_000,
    "." * 100_000,
    "[" * 100_000,
    "\ud800",  # a lone surrogate: a str, though not valid UTF-8
    '["\\ud800", "\\ud800"]',  # the same, escaped inside JSON
]
ODD_CASES = [
    ("exact_match", {}),
    ("regular_expression", {"pattern": r"(?s).{1,50}"}),
    (
        "schema_validation",
        {"schema": {"type": "array", "uniqueItems": True, "items": {"enum": [1]}}},
    ),
    ("length_count", {"unit": "sentences", "min": 1, "max": 3}),
    ("lexical_overlap", {"method": "jaccard"}),
]


@pytest.mark.parametrize(("metric", "config"), ODD_CASES)
@pytest.mark.parametrize("output", ODD_OUTPUTS, ids=range(len(ODD_OUTPUTS)))
def test_no_rule_metric_raises_on_odd_output(
    metric: str, config: dict[str, Any], output: str
) -> None:
    result = score(metric, output, "a reference answer", **config)
    assert isinstance(result, EvaluationResult)
    assert 0 <= result.normalized_score <= 100
    assert result.reason
    json.loads(result.model_dump_json())  # storable as JSON


# --- exact_match ---------------------------------------------------------------------------


def test_exact_match_passes_on_identical_text() -> None:
    result = score("exact_match", "Paris", "Paris")
    assert (result.score, result.normalized_score, result.has_passed) == (1.0, 100.0, True)
    assert "equals the expected output" in result.reason


def test_exact_match_ignores_surrounding_whitespace_by_default() -> None:
    assert score("exact_match", "  Paris\n", "Paris").has_passed


def test_exact_match_still_compares_inner_whitespace() -> None:
    assert not score("exact_match", "New  York", "New York").has_passed


def test_exact_match_compares_whitespace_when_strip_whitespace_is_off() -> None:
    result = score("exact_match", "Paris\n", "Paris", strip_whitespace=False)
    assert (result.score, result.normalized_score, result.has_passed) == (0.0, 0.0, False)


def test_exact_match_is_case_sensitive_by_default() -> None:
    assert not score("exact_match", "paris", "Paris").has_passed


def test_exact_match_ignores_case_when_case_sensitive_is_off() -> None:
    assert score("exact_match", "PARIS", "paris", case_sensitive=False).has_passed


def test_exact_match_folds_unicode_case_fully() -> None:
    assert score("exact_match", "STRASSE", "straße", case_sensitive=False).has_passed
    assert score("exact_match", "ΣΊΣΥΦΟΣ", "σίσυφος", case_sensitive=False).has_passed
    assert not score("exact_match", "STRASSE", "straße").has_passed


def test_exact_match_reports_where_the_output_first_differs() -> None:
    result = score("exact_match", "The answer is 41.", "The answer is 42.")
    assert not result.has_passed
    assert result.metadata["first_difference"] == 15
    assert "at character 15" in result.reason
    assert "got '1.', expected '2.'" in result.reason


def test_exact_match_reports_a_missing_tail_as_a_difference_at_the_end() -> None:
    result = score("exact_match", "abc", "abcdef")
    assert result.metadata["first_difference"] == 3
    assert "got '', expected 'def'" in result.reason


def test_exact_match_of_an_empty_output_against_an_empty_expectation_passes() -> None:
    assert score("exact_match", "", "").has_passed
    assert score("exact_match", "  ", "").has_passed


def test_exact_match_of_an_empty_output_against_text_fails() -> None:
    assert not score("exact_match", "", "Paris").has_passed


def test_exact_match_without_an_expected_output_is_rejected_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"target\.expected_output is required"):
        make_request("exact_match", "Paris")


# --- regular_expression --------------------------------------------------------------------


def test_regular_expression_finds_the_pattern_anywhere() -> None:
    result = score("regular_expression", "Order #1234 shipped", pattern=r"#\d+")
    assert (result.score, result.normalized_score, result.has_passed) == (1.0, 100.0, True)
    assert result.metadata["match"] == "#1234"
    assert result.metadata["span"] == [6, 11]
    assert "found at characters 6..11" in result.reason


def test_regular_expression_fails_when_the_pattern_is_absent() -> None:
    result = score("regular_expression", "no digits here", pattern=r"\d")
    assert (result.score, result.normalized_score, result.has_passed) == (0.0, 0.0, False)
    assert result.reason == r"pattern '\d' is not found in the output (14 characters)"
    assert result.metadata["match"] is None


def test_regular_expression_full_match_requires_the_whole_output() -> None:
    assert score("regular_expression", "1234", pattern=r"\d+", full_match=True).has_passed
    partial = score("regular_expression", "1234 units", pattern=r"\d+", full_match=True)
    assert not partial.has_passed
    assert "does not match in full" in partial.reason


def test_regular_expression_full_match_does_not_forgive_a_trailing_newline() -> None:
    assert not score("regular_expression", "1234\n", pattern=r"\d+", full_match=True).has_passed


def test_regular_expression_is_case_sensitive_unless_ignore_case() -> None:
    assert not score("regular_expression", "YES", pattern="yes").has_passed
    assert score("regular_expression", "YES", pattern="yes", ignore_case=True).has_passed


def test_regular_expression_matches_unicode_text() -> None:
    assert score("regular_expression", "Ça coûte 5 €", pattern=r"^\w+ \w+ \d €$").has_passed
    assert score("regular_expression", "ÉTÉ", pattern="été", ignore_case=True).has_passed


def test_regular_expression_can_require_an_empty_output() -> None:
    assert score("regular_expression", "", pattern="^$").has_passed
    assert not score("regular_expression", "x", pattern="^$").has_passed


def test_an_invalid_regular_expression_is_rejected_at_validation_time() -> None:
    with pytest.raises(
        ValidationError, match=r"evaluation\.config\.pattern: .*not a valid regular"
    ):
        make_request("regular_expression", "x", pattern="(unclosed")


def test_an_unknown_config_key_is_rejected_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"evaluation\.config\.patern"):
        make_request("regular_expression", "x", patern="x")


# --- schema_validation ---------------------------------------------------------------------

ANSWER_SCHEMA = {
    "type": "object",
    "required": ["answer", "confidence"],
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "sources": {"type": "array", "items": {"type": "object", "required": ["url"]}},
    },
}


def test_schema_validation_passes_conforming_json() -> None:
    result = score(
        "schema_validation", '{"answer": "Paris", "confidence": 90}', schema=ANSWER_SCHEMA
    )
    assert (result.score, result.normalized_score, result.has_passed) == (1.0, 100.0, True)
    assert result.metadata["valid_json"] is True
    assert result.metadata["violation_count"] == 0


def test_schema_validation_fails_invalid_json_with_the_parse_error_in_the_reason() -> None:
    result = score("schema_validation", '{"answer": "Paris",}', schema=ANSWER_SCHEMA)
    assert (result.score, result.normalized_score, result.has_passed) == (0.0, 0.0, False)
    assert result.reason.startswith("output is not valid JSON: ")
    assert "line 1 column" in result.reason
    assert result.metadata["valid_json"] is False


def test_schema_validation_fails_an_empty_output_as_invalid_json() -> None:
    result = score("schema_validation", "", schema={})
    assert not result.has_passed
    assert result.reason.startswith("output is not valid JSON")


def test_schema_validation_does_not_strip_a_markdown_fence() -> None:
    fenced = '```json\n{"answer": "Paris", "confidence": 90}\n```'
    assert not score("schema_validation", fenced, schema=ANSWER_SCHEMA).has_passed


def test_schema_validation_refuses_nan_which_is_not_json() -> None:
    result = score("schema_validation", '{"x": NaN}', schema={})
    assert not result.has_passed
    assert "NaN is not a JSON value" in result.reason


def test_schema_validation_accepts_surrounding_whitespace_and_unicode() -> None:
    output = '\n  {"answer": "東京 🗼", "confidence": 70}  \n'
    assert score("schema_validation", output, schema=ANSWER_SCHEMA).has_passed


def test_schema_validation_reports_nested_violations_with_their_paths() -> None:
    output = json.dumps({"answer": "Paris", "confidence": 90, "sources": [{"url": "a"}, {}]})
    result = score("schema_validation", output, schema=ANSWER_SCHEMA)
    assert not result.has_passed
    assert result.metadata["violations"] == ["$.sources[1]: 'url' is a required property"]
    assert result.metadata["violation_paths"] == ["$.sources[1]"]
    assert "$.sources[1]: 'url' is a required property" in result.reason


def test_schema_validation_treats_a_boolean_as_not_an_integer() -> None:
    result = score("schema_validation", '{"answer": "x", "confidence": true}', schema=ANSWER_SCHEMA)
    assert not result.has_passed
    assert "$.confidence: True is not of type 'integer'" in result.reason


def test_schema_validation_lists_the_first_three_violations_and_counts_the_rest() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    result = score("schema_validation", "[1, 2, 3, 4, 5]", schema=schema)
    assert result.reason == (
        "output violates the schema in 5 places: $[0]: 1 is not of type 'string'; "
        "$[1]: 2 is not of type 'string'; $[2]: 3 is not of type 'string'; and 2 more"
    )
    assert result.metadata["violation_count"] == 5
    assert len(result.metadata["violations"]) == 5


def test_schema_validation_keeps_at_most_twenty_violations_in_the_metadata() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    result = score("schema_validation", json.dumps(list(range(500))), schema=schema)
    assert result.metadata["violation_count"] == 500
    assert len(result.metadata["violations"]) == 20


def test_schema_validation_survives_output_nested_too_deeply() -> None:
    result = score("schema_validation", "[" * 50_000 + "]" * 50_000, schema={"enum": [1]})
    assert not result.has_passed
    assert "nested too deeply" in result.reason


def test_a_malformed_schema_is_rejected_at_validation_time_with_its_path() -> None:
    schema = {"properties": {"age": {"minimum": "eighteen"}}}
    with pytest.raises(ValidationError) as caught:
        make_request("schema_validation", "{}", schema=schema)
    message = str(caught.value)
    where = "evaluation.config.schema: $.properties.age.minimum"
    assert f"{where}: 'eighteen' is not of type" in message


def test_a_dangling_reference_is_rejected_at_validation_time() -> None:
    schema = {"properties": {"item": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(ValidationError, match=r"\$\.properties\.item\.\$ref: cannot resolve"):
        make_request("schema_validation", "{}", schema=schema)


def test_schema_validation_follows_refs_into_defs() -> None:
    schema = {
        "$defs": {"source": {"type": "object", "required": ["url"]}},
        "type": "array",
        "items": {"$ref": "#/$defs/source"},
    }
    assert score("schema_validation", '[{"url": "a"}]', schema=schema).has_passed
    failed = score("schema_validation", '[{"url": "a"}, {"title": "b"}]', schema=schema)
    assert failed.metadata["violations"] == ["$[1]: 'url' is a required property"]


def test_formats_are_checked_only_when_asked_for() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}
    output = '{"id": "not-a-uuid"}'
    assert score("schema_validation", output, schema=schema).has_passed
    checked = score("schema_validation", output, schema=schema, check_formats=True)
    assert not checked.has_passed
    assert checked.metadata["violations"] == ["$.id: 'not-a-uuid' is not a 'uuid'"]


def test_schema_validation_requires_a_schema() -> None:
    with pytest.raises(ValidationError, match=r"evaluation\.config\.schema"):
        make_request("schema_validation", "{}")


# --- length_count --------------------------------------------------------------------------


def test_length_count_reports_how_far_outside_the_bounds_the_output_is() -> None:
    result = score("length_count", "word " * 412, min=10, max=300)
    assert result.reason == "output has 412 words; allowed 10..300 (112 too many)"
    assert result.score == 412
    assert not result.has_passed
    assert result.metadata == {
        "metric": "length_count", "unit": "words", "count": 412, "min": 10, "max": 300,
    }  # fmt: skip


def test_length_count_counts_whitespace_separated_words_by_default() -> None:
    result = score("length_count", "  one\ttwo\n\nthree  ", max=5)
    assert result.score == 3
    assert result.has_passed
    assert result.reason == "output has 3 words, within the allowed at most 5"


def test_length_count_counts_characters_as_code_points() -> None:
    assert score("length_count", "héllo 😀", unit="characters", max=10).score == 7


def test_length_count_counts_characters_including_whitespace() -> None:
    assert score("length_count", " a b ", unit="characters", min=1).score == 5


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("", 0),
        ("   ", 0),
        ("...", 0),
        ("Hello world", 1),
        ("Hello world.", 1),
        ("One. Two! Three?", 3),
        ("Wait... what?! Really.", 3),
        ("First.\n\nSecond", 2),
        ("Version 2.0 is out.", 2),  # a known limit of splitting on full stops
    ],
)
def test_length_count_counts_sentences_between_runs_of_terminators(
    text: str, sentences: int
) -> None:
    assert score("length_count", text, unit="sentences", min=0).score == sentences


def test_length_count_passes_at_exactly_the_minimum_and_the_maximum() -> None:
    at_min = score("length_count", "a b", min=2, max=4)
    at_max = score("length_count", "a b c d", min=2, max=4)
    for result in (at_min, at_max):
        assert (result.has_passed, result.normalized_score) == (True, 100.0)


def test_length_count_fails_one_past_either_bound() -> None:
    assert not score("length_count", "a", min=2, max=4).has_passed
    assert not score("length_count", "a b c d e", min=2, max=4).has_passed


def test_length_count_scales_the_normalized_score_by_the_ratio_to_the_missed_bound() -> None:
    assert score("length_count", "a " * 5, min=10).normalized_score == 50.0
    assert score("length_count", "a " * 20, max=10).normalized_score == 50.0
    assert score("length_count", "a " * 40, min=1, max=10).normalized_score == 25.0


def test_length_count_with_only_a_minimum_says_at_least() -> None:
    result = score("length_count", "a b", min=3)
    assert result.reason == "output has 2 words; allowed at least 3 (1 too few)"
    assert result.metadata["max"] is None


def test_length_count_of_an_empty_output_below_a_minimum_scores_zero() -> None:
    result = score("length_count", "", min=1)
    assert (result.score, result.normalized_score, result.has_passed) == (0.0, 0.0, False)
    assert result.reason == "output has 0 words; allowed at least 1 (1 too few)"


def test_length_count_with_a_maximum_of_zero_requires_an_empty_output() -> None:
    assert score("length_count", "", max=0).has_passed
    result = score("length_count", "x", unit="characters", max=0)
    assert (result.normalized_score, result.has_passed) == (0.0, False)
    assert result.reason == "output has 1 character; allowed at most 0 (1 too many)"


def test_length_count_rejects_a_minimum_above_the_maximum_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"min \(5\) is greater than max \(2\)"):
        make_request("length_count", "x", min=5, max=2)


def test_length_count_rejects_a_config_without_bounds_at_validation_time() -> None:
    with pytest.raises(ValidationError, match="give at least one of min and max"):
        make_request("length_count", "x", unit="words")


def test_length_count_rejects_a_negative_bound_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"evaluation\.config\.min"):
        make_request("length_count", "x", min=-1)


def test_length_count_rejects_an_unknown_unit_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"evaluation\.config\.unit"):
        make_request("length_count", "x", unit="tokens", max=3)


# --- lexical_overlap -----------------------------------------------------------------------


def test_lexical_overlap_of_identical_texts_is_one_by_every_method() -> None:
    result = score("lexical_overlap", "The cat sat.", "The cat sat.")
    for figure in ("precision", "recall", "f1", "jaccard"):
        assert result.metadata[figure] == 1.0
    assert (result.score, result.normalized_score, result.has_passed) == (1.0, 100.0, True)


def test_lexical_overlap_computes_every_figure_and_scores_the_chosen_one() -> None:
    # output: the cat sat (3 words); expected: the cat sat on the mat (6 words); 3 shared.
    expected = {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "jaccard": 0.5}
    for method, value in expected.items():
        result = score("lexical_overlap", "the cat sat", "the cat sat on the mat", method=method)
        assert result.score == pytest.approx(value)
        assert result.normalized_score == pytest.approx(100 * value)
        assert result.metadata["method"] == method
        for figure, figure_value in expected.items():
            assert result.metadata[figure] == pytest.approx(figure_value)


def test_lexical_overlap_explains_its_figures() -> None:
    result = score("lexical_overlap", "the cat sat", "the cat sat on the mat")
    assert result.reason == (
        "f1 0.67 is at least the threshold 0.50: 3 shared words; the output has 3 words, "
        "the expected output 6 (precision 1.00, recall 0.50)"
    )
    assert (result.metadata["shared_words"], result.metadata["output_words"]) == (3, 3)
    assert result.metadata["expected_words"] == 6


def test_lexical_overlap_counts_repeated_words_as_a_multiset() -> None:
    result = score("lexical_overlap", "the the the", "the cat")
    assert result.metadata["shared_words"] == 1
    assert result.metadata["precision"] == pytest.approx(1 / 3)
    assert result.metadata["recall"] == pytest.approx(1 / 2)
    assert result.metadata["jaccard"] == pytest.approx(1 / 4)


def test_lexical_overlap_ignores_case_and_punctuation_by_default() -> None:
    assert score("lexical_overlap", "HELLO, World!!!", "hello world").score == 1.0


def test_lexical_overlap_respects_case_when_case_sensitive() -> None:
    result = score("lexical_overlap", "Hello world", "hello world", case_sensitive=True)
    assert result.score == pytest.approx(0.5)


def test_lexical_overlap_tokenises_unicode_letters_and_digits() -> None:
    result = score("lexical_overlap", "Café № 42 — naïve 東京", "café 42 naïve 東京")
    assert result.metadata["output_words"] == 4
    assert result.score == 1.0


def test_lexical_overlap_treats_composed_and_decomposed_accents_alike() -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert score("lexical_overlap", composed, decomposed).score == 1.0


def test_lexical_overlap_of_two_texts_without_words_is_a_perfect_score() -> None:
    for output, expected in (("", ""), ("...", "!?"), ("  ", "")):
        result = score("lexical_overlap", output, expected, threshold=1.0)
        assert (result.score, result.normalized_score, result.has_passed) == (1.0, 100.0, True)
        assert "neither text has any words" in result.reason


def test_lexical_overlap_of_an_empty_output_against_text_scores_zero() -> None:
    for method in ("precision", "recall", "f1", "jaccard"):
        result = score("lexical_overlap", "", "some words", method=method, threshold=0.0)
        assert result.score == 0.0
        assert result.has_passed  # a threshold of 0 accepts anything


def test_lexical_overlap_of_text_against_an_empty_expectation_scores_zero() -> None:
    result = score("lexical_overlap", "some words", "", method="precision")
    assert (result.score, result.has_passed) == (0.0, False)


def test_lexical_overlap_passes_at_exactly_the_threshold() -> None:
    at = score("lexical_overlap", "a b", "a b c d", method="recall", threshold=0.5)
    below = score("lexical_overlap", "a b", "a b c d", method="recall", threshold=0.51)
    assert at.has_passed
    assert not below.has_passed
    assert "is below the threshold 0.51" in below.reason


def test_lexical_overlap_rejects_a_threshold_above_one_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"evaluation\.config\.threshold"):
        make_request("lexical_overlap", "a", "a", threshold=1.5)


def test_lexical_overlap_without_an_expected_output_is_rejected_at_validation_time() -> None:
    with pytest.raises(ValidationError, match=r"target\.expected_output is required"):
        make_request("lexical_overlap", "a")


# --- lexical_overlap algorithms ---------------------------------------------------------------


def test_lexical_overlap_word_is_the_default_algorithm() -> None:
    result = score("lexical_overlap", "the cat sat", "the cat sat on the mat")
    assert result.metadata["algorithm"] == "word"
    assert result.score == pytest.approx(2 / 3)


def test_rouge_2_f1_scores_shared_bigrams_and_explains_them() -> None:
    result = score(
        "lexical_overlap",
        "the cat sat on the mat",
        "the cat lay on the mat",
        algorithm="rouge",
        n=2,
        threshold=0.5,
    )
    assert result.score == pytest.approx(0.6)
    assert result.has_passed
    assert result.metadata["shared_ngrams"] == 3
    assert result.reason == (
        "ROUGE-2 f1 0.60 is at least the threshold 0.50: 3 shared 2-grams; the output has "
        "5 2-grams, the expected output 5 (precision 0.60, recall 0.60)"
    )


def test_rouge_l_recall_scores_the_longest_common_subsequence() -> None:
    result = score(
        "lexical_overlap",
        "the gunman police killed",
        "police killed the gunman",
        algorithm="rouge",
        variant="rouge-l",
        method="recall",
    )
    assert (result.score, result.metadata["lcs_words"], result.has_passed) == (0.5, 2, True)
    assert result.metadata["measure"] == "ROUGE-L recall"


def test_levenshtein_scores_the_normalised_edit_similarity() -> None:
    result = score("lexical_overlap", "Kitten", "sitting", algorithm="levenshtein")
    assert result.score == pytest.approx(4 / 7)
    assert result.metadata["distance"] == 3
    assert result.has_passed
    assert "3 edits over 7 chars" in result.reason


def test_levenshtein_is_case_sensitive_only_when_asked() -> None:
    relaxed = score("lexical_overlap", "PARIS", "paris", algorithm="levenshtein")
    strict = score(
        "lexical_overlap", "PARIS", "paris", algorithm="levenshtein", case_sensitive=True
    )
    assert (relaxed.score, strict.score) == (1.0, 0.0)


def test_substring_passes_when_the_expected_output_appears_in_the_output() -> None:
    result = score(
        "lexical_overlap", "The capital is Paris.", "paris", algorithm="substring", threshold=1
    )
    assert (result.score, result.has_passed, result.metadata["contains"]) == (1.0, True, True)
    missing = score("lexical_overlap", "The capital is Rome.", "paris", algorithm="substring")
    assert missing.metadata["contains"] is False
    assert missing.score < 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"algorithm": "levenshtein", "method": "recall"},
            "evaluation.config.method: the levenshtein algorithm has one score, no method",
        ),
        (
            {"algorithm": "rouge", "method": "jaccard"},
            "evaluation.config.method: ROUGE has precision, recall and f1, not jaccard",
        ),
        ({"n": 2}, "evaluation.config.n: only the rouge algorithm has it"),
        (
            {"algorithm": "rouge", "variant": "rouge-l", "n": 2},
            "evaluation.config.n: ROUGE-L compares whole word sequences",
        ),
        ({"algorithm": "rouge", "n": 0}, "evaluation.config.n: Input should be greater"),
        ({"algorithm": "bleu"}, "evaluation.config.algorithm: Input should be"),
    ],
)
def test_a_lexical_config_that_does_not_fit_its_algorithm_is_refused_naming_the_field(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_request("lexical_overlap", "a", "b", **config)
    assert message in str(caught.value)


# --- numeric_similarity -------------------------------------------------------------------------


def test_numeric_similarity_passes_within_its_relative_tolerance() -> None:
    result = score("numeric_similarity", "Revenue was $1,050 million.", "1000", tolerance=0.1)
    assert (result.has_passed, result.score) == (True, pytest.approx(0.95))
    assert result.metadata["relative_difference"] == pytest.approx(0.05)
    assert result.reason == (
        "found 1,050 (the first number in the output), expected 1000: relative difference "
        "0.05 is within the tolerance 0.1"
    )


def test_numeric_similarity_fails_outside_its_tolerance_and_scores_at_least_zero() -> None:
    assert not score("numeric_similarity", "1,200", "1000", tolerance=0.1).has_passed
    assert score("numeric_similarity", "-5000", "1000").score == 0.0


def test_an_absolute_tolerance_passes_values_near_an_expected_zero() -> None:
    result = score("numeric_similarity", "0.001", "0", absolute_tolerance=0.01)
    assert result.has_passed
    assert result.metadata["relative_difference"] is None  # infinite against 0


def test_numeric_similarity_takes_the_number_from_a_pattern_group() -> None:
    output = "Let me think: 12 + 30. Final answer: 42"
    assert not score("numeric_similarity", output, "42").has_passed
    assert score("numeric_similarity", output, "42", pattern=r"answer:\s*(\S+)").has_passed


def test_an_output_without_a_number_scores_zero_with_the_reason() -> None:
    result = score("numeric_similarity", "I am not sure.", "42")
    assert (result.score, result.has_passed) == (0.0, False)
    assert result.reason == "no number in the output: 'I am not sure.'"


def test_numeric_similarity_reads_comma_decimals_when_told() -> None:
    assert score("numeric_similarity", "3,5 kg", "3,5", decimal_separator=",").has_passed


def test_an_expected_output_without_exactly_one_number_is_a_bad_request() -> None:
    with pytest.raises(ValidationError, match=r"target\.expected_output: holds no number"):
        make_request("numeric_similarity", "42", "forty-two")
    with pytest.raises(ValidationError, match=r"target\.expected_output: holds 2 numbers"):
        make_request("numeric_similarity", "42", "between 40 and 45")


def test_a_numeric_pattern_with_two_groups_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"evaluation\.config\.pattern: has 2 groups"):
        make_request("numeric_similarity", "42", "42", pattern=r"(a)(b)")
