"""The JSON Schema subset: which schemas are accepted, and what an instance's violations say."""

from __future__ import annotations

from typing import Any

import pytest

from workers.evaluations.json_schema import (
    IGNORED_KEYWORDS,
    SUPPORTED_KEYWORDS,
    check_schema,
    validate,
)

PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


# --- check_schema: what a schema may say -----------------------------------------------------


def test_the_supported_keywords_are_exactly_the_documented_subset() -> None:
    assert {
        "type", "enum", "const", "properties", "required", "additionalProperties",
        "items", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "anyOf", "oneOf", "allOf", "not",
    } == SUPPORTED_KEYWORDS  # fmt: skip
    assert not SUPPORTED_KEYWORDS & IGNORED_KEYWORDS


def test_a_schema_using_every_supported_keyword_is_accepted() -> None:
    check_schema(
        {
            "type": ["object", "null"],
            "required": ["a"],
            "additionalProperties": {"type": "string"},
            "properties": {
                "a": {"enum": [1, "x", None]},
                "b": {"const": {"any": ["value"]}},
                "c": {"type": "array", "items": {}, "minItems": 0, "maxItems": 3},
                "d": {"uniqueItems": True},
                "e": {"minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "f": {"minimum": 0, "maximum": 1.5, "exclusiveMinimum": -1, "exclusiveMaximum": 2},
                "g": {"anyOf": [{}], "oneOf": [{"type": "string"}], "allOf": [{}]},
                "h": {"not": {"type": "null"}},
            },
        }
    )


def test_metadata_keywords_are_accepted_and_ignored() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:example",
        "title": "A number",
        "description": "Anything numeric",
        "examples": [1, 2],
        "default": "not even a number",
        "type": "number",
    }
    check_schema(schema)
    assert validate(3, schema) == []


def test_an_empty_schema_accepts_anything() -> None:
    for instance in (None, 0, "x", [1], {"a": 1}, True):
        assert validate(instance, {}) == []


def test_an_unsupported_keyword_is_rejected_with_its_path() -> None:
    schema = {"properties": {"x": {"patternProperties": {"^a": {}}}}}
    with pytest.raises(
        ValueError, match=r"^unsupported keyword 'patternProperties' at properties\.x;"
    ):
        check_schema(schema)


def test_an_unsupported_keyword_at_the_root_says_so() -> None:
    with pytest.raises(ValueError, match=r"unsupported keyword '\$ref' at the schema root"):
        check_schema({"$ref": "#/definitions/x"})


def test_format_is_rejected_rather_than_silently_ignored() -> None:
    with pytest.raises(ValueError, match=r"unsupported keyword 'format' at properties\.email"):
        check_schema({"properties": {"email": {"type": "string", "format": "email"}}})


def test_the_rejection_lists_the_supported_keywords() -> None:
    with pytest.raises(ValueError, match="supported keywords: additionalProperties, allOf"):
        check_schema({"if": {}})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"properties": {"age": {"minimum": "0"}}}, "properties.age.minimum: must be a number"),
        ({"maximum": True}, "maximum: must be a number"),
        ({"minLength": -1}, "minLength: must be a non-negative integer"),
        ({"maxItems": 1.5}, "maxItems: must be a non-negative integer"),
        ({"minItems": False}, "minItems: must be a non-negative integer"),
        ({"type": "text"}, "type: must be one of"),
        ({"type": []}, "type: must be one of"),
        ({"type": ["string", "string"]}, "type: must be one of"),
        ({"type": [{"type": "string"}]}, "type: must be one of"),
        ({"enum": []}, "enum: must be a non-empty array"),
        ({"enum": "red"}, "enum: must be a non-empty array"),
        ({"required": "name"}, "required: must be an array of property names"),
        ({"required": [1]}, "required: must be an array of property names"),
        ({"uniqueItems": "yes"}, "uniqueItems: must be true or false"),
        ({"properties": ["a"]}, "properties: must be an object mapping property names"),
        ({"properties": {"a": "string"}}, r"properties\.a: must be an object \(a schema\)"),
        ({"additionalProperties": "no"}, "additionalProperties: must be an object"),
        ({"items": [{"type": "string"}]}, "items: must be an object"),
        ({"not": None}, "not: must be an object"),
        ({"anyOf": []}, "anyOf: must be a non-empty array of schemas"),
        ({"allOf": {}}, "allOf: must be a non-empty array of schemas"),
        ({"oneOf": [{}, {"minimum": "x"}]}, r"oneOf\[1\]\.minimum: must be a number"),
        ({"pattern": 5}, "pattern: must be a string"),
        ({"pattern": "("}, "pattern: not a valid regular expression"),
        ({"minLength": 5, "maxLength": 2}, r"minLength: 5 is greater than maxLength \(2\)"),
        ({"items": {"minItems": 3, "maxItems": 1}}, r"items\.minItems: 3 is greater than"),
    ],
)
def test_a_malformed_schema_is_rejected_naming_the_offending_place(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_schema(schema)


def test_a_schema_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"schema: must be an object"):
        check_schema(["type", "string"])  # type: ignore[arg-type]


def test_errors_deep_inside_the_schema_name_the_full_path() -> None:
    schema = {
        "properties": {
            "orders": {
                "items": {"anyOf": [{"type": "null"}, {"properties": {"n": {"minimum": []}}}]}
            }
        }
    }
    with pytest.raises(ValueError, match=r"^properties\.orders\.items\.anyOf\[1\]\.properties\.n"):
        check_schema(schema)


def test_validate_rejects_a_malformed_schema_too() -> None:
    with pytest.raises(ValueError, match="unsupported keyword"):
        validate(1, {"dependentRequired": {}})


# --- validate: types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance", "type_name", "valid"),
    [
        (1, "integer", True),
        (1.0, "integer", True),
        (1.5, "integer", False),
        (True, "integer", False),
        (False, "number", False),
        (1, "number", True),
        (2.5, "number", True),
        (True, "boolean", True),
        (0, "boolean", False),
        ("1", "integer", False),
        ("", "string", True),
        (None, "null", True),
        ("null", "null", False),
        ([], "array", True),
        ({}, "array", False),
        ({}, "object", True),
        ([], "object", False),
    ],
)
def test_types_follow_json_schema_where_a_boolean_is_not_a_number(
    instance: Any, type_name: str, valid: bool
) -> None:
    assert (validate(instance, {"type": type_name}) == []) is valid


def test_a_type_violation_names_the_path_and_both_types() -> None:
    schema = {"properties": {"items": {"items": {"properties": {"name": {"type": "string"}}}}}}
    instance = {"items": [{"name": "a"}, {"name": "b"}, {"name": 3}]}
    assert validate(instance, schema) == ["$.items[2].name: expected string, got integer"]


def test_a_boolean_where_an_integer_is_expected_is_reported_as_boolean() -> None:
    assert validate({"age": True}, PERSON | {"required": []}) == [
        "$.age: expected integer, got boolean"
    ]


def test_a_list_of_types_accepts_any_of_them() -> None:
    schema = {"type": ["string", "null"]}
    assert validate(None, schema) == []
    assert validate("x", schema) == []
    assert validate(3, schema) == ["$: expected string or null, got integer"]


# --- validate: enum and const ---------------------------------------------------------------


def test_enum_compares_numbers_by_value_but_keeps_booleans_apart() -> None:
    schema = {"enum": [1, "one"]}
    assert validate(1.0, schema) == []
    assert validate(True, schema) == ['$: true is not one of [1, "one"]']


def test_enum_compares_objects_and_arrays_by_content() -> None:
    schema = {"enum": [{"a": [1, 2]}, [True]]}
    assert validate({"a": [1.0, 2]}, schema) == []
    assert validate([True], schema) == []
    assert validate([1], schema) != []
    assert validate({"a": [2, 1]}, schema) != []


def test_const_requires_an_equal_value() -> None:
    assert validate("on", {"const": "on"}) == []
    assert validate(0, {"const": False}) == ["$: expected false, got 0"]


def test_unicode_values_are_shown_as_written() -> None:
    assert validate("ß", {"enum": ["straße"]}) == ['$: "ß" is not one of ["straße"]']


# --- validate: objects ----------------------------------------------------------------------


def test_a_valid_instance_has_no_violations() -> None:
    assert validate({"name": "Ada", "age": 36, "tags": ["math"]}, PERSON) == []


def test_every_violation_is_reported_not_just_the_first() -> None:
    errors = validate({"name": "", "tags": ["a", 2], "nickname": "x"}, PERSON)
    assert errors == [
        '$: missing required property "age"',
        "$.name: expected at least 1 character, got 0",
        "$.tags[1]: expected string, got integer",
        '$: property "nickname" is not allowed',
    ]


def test_additional_properties_given_as_a_schema_validate_the_extra_members() -> None:
    schema = {"properties": {"id": {}}, "additionalProperties": {"type": "number"}}
    assert validate({"id": "x", "score": 1.5}, schema) == []
    assert validate({"id": "x", "score": "high"}, schema) == [
        "$.score: expected number, got string"
    ]


def test_property_names_that_are_not_identifiers_are_quoted_in_the_path() -> None:
    schema = {"properties": {"first name": {"type": "string"}}}
    assert validate({"first name": 1}, schema) == ['$["first name"]: expected string, got integer']


def test_object_keywords_ignore_values_that_are_not_objects() -> None:
    assert validate("text", {"required": ["a"], "properties": {"a": {}}}) == []


# --- validate: arrays -----------------------------------------------------------------------


def test_item_counts_are_inclusive_bounds() -> None:
    schema = {"minItems": 1, "maxItems": 2}
    assert validate([1], schema) == []
    assert validate([1, 2], schema) == []
    assert validate([], schema) == ["$: expected at least 1 item, got 0"]
    assert validate([1, 2, 3], schema) == ["$: expected at most 2 items, got 3"]


def test_unique_items_treats_one_and_one_point_zero_as_equal() -> None:
    assert validate([1, 2, 1.0], {"uniqueItems": True}) == [
        "$: items must be unique; [2] repeats [0]"
    ]


def test_unique_items_keeps_true_and_one_apart() -> None:
    assert validate([1, True, "1", [1], {"a": 1}], {"uniqueItems": True}) == []


def test_unique_items_compares_objects_by_content() -> None:
    assert validate([{"a": 1, "b": 2}, {"b": 2, "a": 1}], {"uniqueItems": True}) != []


def test_unique_items_false_allows_repeats() -> None:
    assert validate([1, 1], {"uniqueItems": False}) == []


# --- validate: strings ----------------------------------------------------------------------


def test_string_length_counts_code_points_not_bytes() -> None:
    schema = {"minLength": 5, "maxLength": 5}
    assert validate("héllo", schema) == []
    assert validate("😀😀😀😀😀", schema) == []
    assert validate("hi", schema) == ["$: expected at least 5 characters, got 2"]


def test_pattern_searches_anywhere_in_the_string() -> None:
    assert validate("order 42 shipped", {"pattern": r"\d+"}) == []
    assert validate("ABC", {"pattern": "^[a-z]+$"}) == [
        '$: "ABC" does not match pattern "^[a-z]+$"'
    ]


def test_long_values_are_clipped_in_messages() -> None:
    (error,) = validate("x" * 10_000, {"maxLength": 3, "type": "string"})
    assert error == "$: expected at most 3 characters, got 10000"
    (error,) = validate("y" * 10_000, {"enum": ["a"]})
    assert len(error) < 150
    assert error.startswith('$: "yyy') and "…" in error


# --- validate: numbers ----------------------------------------------------------------------


def test_minimum_and_maximum_include_their_bounds() -> None:
    schema = {"minimum": 0, "maximum": 10}
    assert validate(0, schema) == []
    assert validate(10.0, schema) == []
    assert validate(-1, schema) == ["$: -1 is less than the minimum 0"]
    assert validate(10.5, schema) == ["$: 10.5 is greater than the maximum 10"]


def test_exclusive_bounds_exclude_their_bounds() -> None:
    schema = {"exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert validate(0.5, schema) == []
    assert validate(0, schema) == ["$: 0 is not greater than 0"]
    assert validate(1, schema) == ["$: 1 is not less than 1"]


def test_numeric_keywords_ignore_booleans_and_strings() -> None:
    assert validate(True, {"minimum": 5}) == []
    assert validate("3", {"minimum": 5}) == []


# --- validate: combinators ------------------------------------------------------------------


def test_any_of_passes_when_one_branch_matches() -> None:
    schema = {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}
    assert validate(3, schema) == []
    assert validate(-3, schema) == [
        "$: matches none of the anyOf schemas ([0] $: expected string, got integer; "
        "[1] $: -3 is less than the minimum 0)"
    ]


def test_one_of_fails_when_more_than_one_branch_matches() -> None:
    schema = {"oneOf": [{"type": "number"}, {"type": "integer"}]}
    assert validate(1.5, schema) == []
    assert validate(2, schema) == ["$: matches oneOf schemas [0], [1], not exactly one"]
    assert validate("2", schema)[0].startswith("$: matches none of the oneOf schemas")


def test_all_of_reports_the_violations_of_every_branch() -> None:
    schema = {"allOf": [{"type": "string"}, {"minLength": 3}]}
    assert validate("abc", schema) == []
    assert validate("ab", schema) == ["$: expected at least 3 characters, got 2"]


def test_not_fails_when_its_schema_matches() -> None:
    schema = {"not": {"type": "null"}}
    assert validate(0, schema) == []
    assert validate(None, schema) == ["$: must not match the schema under 'not'"]


def test_combinators_report_nested_paths() -> None:
    schema = {"properties": {"ids": {"items": {"anyOf": [{"type": "integer"}]}}}}
    assert validate({"ids": [1, "x"]}, schema) == [
        "$.ids[1]: matches none of the anyOf schemas ([0] $.ids[1]: expected integer, got string)"
    ]
