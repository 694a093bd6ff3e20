"""JSON Schema on the jsonschema library: Draft 2020-12 with $ref/$defs, nothing fetched,
formats opt-in, and violations that name their JSON path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from workers.evaluations.json_schema import CHECKED_FORMATS, Violation, check_schema, validate

ORDER = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "line": {
            "type": "object",
            "required": ["sku", "quantity"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-\\d+$"},
                "quantity": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        }
    },
    "type": "object",
    "required": ["lines"],
    "properties": {"lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 1}},
}


def paths(violations: list[Violation]) -> list[str]:
    return [v.path for v in violations]


# --- $ref and $defs ---------------------------------------------------------------------------


def test_an_instance_that_fits_a_schema_with_refs_into_defs_passes() -> None:
    assert validate({"lines": [{"sku": "ABC-1", "quantity": 2}]}, ORDER) == []


def test_a_violation_behind_a_ref_names_the_instance_path_of_the_failure() -> None:
    order = {"lines": [{"sku": "ABC-1", "quantity": 2}, {"sku": "abc", "quantity": 0}]}

    violations = validate(order, ORDER)

    assert paths(violations) == ["$.lines[1].sku", "$.lines[1].quantity"]
    assert str(violations[1]) == "$.lines[1].quantity: 0 is less than the minimum of 1"


def test_a_recursive_ref_to_the_root_validates_nested_instances() -> None:
    tree = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["name"],
    }
    assert validate({"name": "a", "children": [{"name": "b", "children": []}]}, tree) == []
    assert paths(validate({"name": "a", "children": [{"children": [{}]}]}, tree)) == [
        "$.children[0].children[0]",
        "$.children[0]",
    ]


def test_anchors_and_relative_refs_resolve_against_the_schemas_own_id() -> None:
    schema = {
        "$id": "https://schemas.example/order",
        "$defs": {
            "name": {"$anchor": "name", "type": "string"},
            "count": {"$id": "count", "type": "integer"},
        },
        "properties": {"name": {"$ref": "#name"}, "count": {"$ref": "count"}},
    }
    assert validate({"name": "x", "count": 1}, schema) == []
    assert paths(validate({"name": 1, "count": "x"}, schema)) == ["$.name", "$.count"]


def test_a_ref_to_a_bundled_meta_schema_resolves_without_the_network() -> None:
    schema = {"$ref": "https://json-schema.org/draft/2020-12/schema"}
    assert validate({"type": "string"}, schema) == []
    assert validate({"type": 12}, schema) != []


def test_a_dangling_ref_is_refused_when_the_schema_is_checked() -> None:
    where = r"^\$\.properties\.x\.\$ref: cannot resolve '#/\$defs/nope'"
    with pytest.raises(ValueError, match=where):
        check_schema({"properties": {"x": {"$ref": "#/$defs/nope"}}})


@pytest.fixture
def remote_schema_server() -> Iterator[tuple[str, list[str]]]:
    """A schema server on 127.0.0.1 that records every request it gets."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/item.json", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_ref_is_refused_and_never_fetched(
    remote_schema_server: tuple[str, list[str]],
) -> None:
    url, seen = remote_schema_server

    with pytest.raises(ValueError, match="remote references are not fetched"):
        check_schema({"items": {"$ref": url}})
    with pytest.raises(ValueError, match="remote references are not fetched"):
        validate(["x"], {"items": {"$ref": url}})

    assert seen == []


# --- Draft 2020-12 keywords the old subset refused ----------------------------------------------


@pytest.mark.parametrize(
    ("schema", "good", "bad", "bad_path"),
    [
        ({"prefixItems": [{"type": "integer"}, {"type": "string"}]}, [1, "a"], [1, 2], "$[1]"),
        (
            {"patternProperties": {"^n_": {"type": "number"}}, "additionalProperties": False},
            {"n_a": 1},
            {"n_a": "x"},
            "$.n_a",
        ),
        ({"dependentRequired": {"card": ["cvc"]}}, {"card": 1, "cvc": 2}, {"card": 1}, "$"),
        ({"contains": {"const": 3}, "maxContains": 1}, [1, 3], [3, 3], "$"),
        ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ok": 1}, {"Bad": 1}, "$"),
        (
            {"if": {"required": ["a"]}, "then": {"required": ["b"]}},
            {"a": 1, "b": 2},
            {"a": 1},
            "$",
        ),
        (
            {"prefixItems": [{"type": "integer"}], "unevaluatedItems": False},
            [1],
            [1, 2],
            "$",
        ),
    ],
)
def test_draft_2020_12_keywords_are_enforced(
    schema: dict[str, Any], good: Any, bad: Any, bad_path: str
) -> None:
    check_schema(schema)
    assert validate(good, schema) == []
    assert paths(validate(bad, schema)) == [bad_path]


def test_a_schema_naming_draft_07_is_read_as_draft_07() -> None:
    # In draft 7 an array under "items" is a tuple; in 2020-12 it is not a valid schema.
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}
    check_schema(schema)
    assert paths(validate([1], schema)) == ["$[0]"]
    with pytest.raises(ValueError, match=r"^\$\.items: "):
        check_schema({"items": [{"type": "string"}]})


def test_json_semantics_keep_booleans_apart_from_numbers() -> None:
    assert paths(validate(True, {"type": "integer"})) == ["$"]
    assert validate(3.0, {"type": "integer"}) == []
    assert paths(validate([1, 1.0], {"uniqueItems": True})) == ["$"]


# --- formats --------------------------------------------------------------------------------


def test_formats_are_annotations_unless_checking_is_asked_for() -> None:
    schema = {"type": "string", "format": "email"}
    assert validate("not an address", schema) == []
    assert [str(v) for v in validate("not an address", schema, check_formats=True)] == [
        "$: 'not an address' is not a 'email'"
    ]
    assert validate("someone@example.org", schema, check_formats=True) == []


def test_checking_a_format_that_this_installation_cannot_check_is_refused() -> None:
    schema = {"properties": {"when": {"type": "string", "format": "date-time"}}}
    assert "date-time" not in CHECKED_FORMATS
    check_schema(schema)  # an annotation: fine
    with pytest.raises(ValueError, match=r"^\$\.properties\.when\.format: format 'date-time'"):
        check_schema(schema, check_formats=True)


def test_a_format_inside_const_data_is_not_mistaken_for_a_schema() -> None:
    check_schema({"const": {"format": "date-time", "$ref": "#/nowhere"}}, check_formats=True)


# --- malformed schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "numbr"}, r"\$\.type"),
        ({"properties": {"age": {"minimum": "eighteen"}}}, r"\$\.properties\.age\.minimum"),
        ({"required": "name"}, r"\$\.required"),
        ({"anyOf": []}, r"\$\.anyOf"),
    ],
)
def test_a_malformed_schema_is_refused_naming_the_place(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError, match=rf"^{where}: "):
        check_schema(schema)


def test_an_empty_schema_accepts_anything() -> None:
    for instance in (None, 0, "x", [1], {"a": 1}, True):
        assert validate(instance, {}) == []


def test_long_values_are_clipped_in_messages() -> None:
    (violation,) = validate("x" * 5000, {"type": "integer"})
    assert len(violation.message) <= 200
    assert violation.message.endswith("…")
