"""Text similarity measures against values computed by hand."""

from __future__ import annotations

import pytest

from workers.evaluations.text_similarity import (
    levenshtein_similarity,
    ngrams,
    rouge_l,
    rouge_n,
    substring_similarity,
    word_overlap,
    words,
)


def w(text: str) -> list[str]:
    return words(text, case_sensitive=False)


# --- ROUGE-N: n-gram counts by hand -----------------------------------------------------------


def test_ngrams_are_counted_with_repeats() -> None:
    assert ngrams(w("the cat sat on the mat"), 2) == {
        ("the", "cat"): 1,
        ("cat", "sat"): 1,
        ("sat", "on"): 1,
        ("on", "the"): 1,
        ("the", "mat"): 1,
    }
    assert ngrams(w("the the the"), 2) == {("the", "the"): 2}
    assert ngrams(w("one"), 2) == {}


def test_rouge_1_counts_shared_words_including_a_repeated_one() -> None:
    # output {the: 2, cat, sat, on, mat}, expected {the: 2, cat, lay, on, mat}: 5 shared of 6.
    found = rouge_n(w("the cat sat on the mat"), w("the cat lay on the mat"), 1)
    assert (found.shared, found.output, found.expected) == (5, 6, 6)
    assert (found.precision, found.recall, found.f1) == pytest.approx((5 / 6, 5 / 6, 5 / 6))


def test_rouge_2_counts_shared_bigrams() -> None:
    # output bigrams: the cat, cat sat, sat on, on the, the mat; expected: the cat, cat lay,
    # lay on, on the, the mat. Shared: the cat, on the, the mat.
    found = rouge_n(w("the cat sat on the mat"), w("the cat lay on the mat"), 2)
    assert (found.shared, found.output, found.expected) == (3, 5, 5)
    assert (found.precision, found.recall, found.f1) == pytest.approx((0.6, 0.6, 0.6))


def test_rouge_n_precision_and_recall_differ_for_a_short_output() -> None:
    # output "the cat": 1 bigram, shared with the 5 bigrams of the expected text.
    found = rouge_n(w("the cat"), w("the cat sat on the mat"), 2)
    assert (found.shared, found.output, found.expected) == (1, 1, 5)
    assert (found.precision, found.recall, found.f1) == pytest.approx((1.0, 0.2, 1 / 3))


def test_rouge_1_clips_a_repeated_word_to_the_count_in_the_expected_text() -> None:
    found = rouge_n(w("the the the the"), w("the cat"), 1)
    assert (found.shared, found.precision, found.recall) == (1, 0.25, 0.5)


def test_texts_too_short_for_any_ngram_compare_their_words() -> None:
    assert rouge_n(w("Paris"), w("paris"), 2).f1 == 1.0
    assert rouge_n(w("Paris"), w("Rome"), 2).f1 == 0.0


# --- ROUGE-L ------------------------------------------------------------------------------------


def test_rouge_l_takes_the_longest_common_word_subsequence() -> None:
    # "police killed" or "the gunman": an LCS of 2 of 4 words; ROUGE-2 shares both bigrams.
    output, expected = w("the gunman police killed"), w("police killed the gunman")
    found = rouge_l(output, expected)
    assert (found.shared, found.precision, found.recall, found.f1) == (2, 0.5, 0.5, 0.5)
    assert rouge_n(output, expected, 2).precision == pytest.approx(2 / 3)


def test_rouge_l_skips_words_in_between() -> None:
    # LCS "the cat on the mat": 5 of the output's 6 words and the expected text's 7.
    found = rouge_l(w("the cat sat on the mat"), w("the big cat lay on the mat"))
    assert (found.shared, found.output, found.expected) == (5, 6, 7)
    assert found.precision == pytest.approx(5 / 6)
    assert found.recall == pytest.approx(5 / 7)


# --- word overlap ---------------------------------------------------------------------------------


def test_word_overlap_figures_include_jaccard() -> None:
    found = word_overlap(w("the cat sat"), w("the cat sat on the mat"))
    assert (found.precision, found.recall, found.jaccard) == (1.0, 0.5, 0.5)


def test_two_texts_without_words_are_identical_and_one_empty_side_scores_zero() -> None:
    assert rouge_l([], []).f1 == 1.0
    assert rouge_n(w("a b"), [], 1).f1 == 0.0


# --- characters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "distance", "similarity"),
    [
        ("kitten", "sitting", 3, 1 - 3 / 7),
        ("flaw", "lawn", 2, 0.5),
        ("same", "same", 0, 1.0),
        ("abc", "", 3, 0.0),
        ("", "", 0, 1.0),
    ],
)
def test_levenshtein_similarity_is_one_minus_distance_over_the_longer_length(
    output: str, expected: str, distance: int, similarity: float
) -> None:
    assert levenshtein_similarity(output, expected) == (pytest.approx(similarity), distance)


def test_substring_similarity_is_one_when_the_expected_text_appears_verbatim() -> None:
    assert substring_similarity("the capital is paris.", "paris") == 1.0


def test_substring_similarity_scores_the_closest_window_of_the_output() -> None:
    # The best window "paris." against "pariss": Indel similarity 2 * 5 / 12.
    assert substring_similarity("the capital is paris.", "pariss") == pytest.approx(10 / 12)


def test_an_output_shorter_than_the_expected_text_is_compared_whole() -> None:
    # "par" against "paris": 2 * 3 / 8, not 1 (a short output does not contain the text).
    assert substring_similarity("par", "paris") == pytest.approx(0.75)
    assert substring_similarity("anything", "") == 1.0
    assert substring_similarity("", "paris") == 0.0
