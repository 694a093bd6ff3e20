"""Finding numbers in text and comparing them."""

from __future__ import annotations

import math

import pytest

from workers.evaluations.numeric import extract_number, find_numbers, relative_difference


def values(text: str, decimal_separator: str = ".") -> list[float]:
    return [value for _, value in find_numbers(text, decimal_separator)]


def test_numbers_with_signs_thousands_decimals_and_exponents_are_found_in_order() -> None:
    assert values("It costs $1,234.50, or 3e2, or .5 and -7") == [1234.5, 300.0, 0.5, -7.0]


def test_a_typographic_minus_sign_counts() -> None:
    assert values("\u22124.5 degrees") == [-4.5]


def test_a_comma_decimal_separator_swaps_the_roles_of_comma_and_dot() -> None:
    assert values("1.234,5 Euro und 3,5", ",") == [1234.5, 3.5]
    assert values("3,5") == [3.0, 5.0]  # under "." a comma without three digits separates


def test_digits_inside_words_are_not_numbers() -> None:
    assert values("gpt4 scored 87 on v2") == [87.0]


@pytest.mark.parametrize(("extract", "written"), [("first", "17"), ("last", "42")])
def test_extract_picks_the_first_or_the_last_number(extract: str, written: str) -> None:
    found, _ = extract_number(
        "17 apples, then 42", extract=extract, pattern=None, decimal_separator="."
    )
    assert found == written


def test_extract_only_refuses_an_output_with_several_numbers() -> None:
    found, why = extract_number("17 or 42", extract="only", pattern=None, decimal_separator=".")
    assert found is None
    assert why == "2 numbers in the output; extract 'only' needs exactly one"


def test_a_pattern_narrows_the_search_to_its_group() -> None:
    found, why = extract_number(
        "Step 3: add 2. Answer: 42",
        extract="first",
        pattern=r"Answer:\s*(.+)",
        decimal_separator=".",
    )
    assert found == "42"
    assert "pattern" in why


def test_a_pattern_that_is_not_found_says_so() -> None:
    found, why = extract_number("42", extract="first", pattern="Answer", decimal_separator=".")
    assert (found, why) == (None, "pattern 'Answer' is not found in the output")


def test_relative_difference_is_measured_against_the_expected_value() -> None:
    assert relative_difference(105, 100) == pytest.approx(0.05)
    assert relative_difference(-100, 100) == 2.0
    assert relative_difference(0, 0) == 0.0
    assert math.isinf(relative_difference(1, 0))
