"""A small JSON Schema validator for the subset that the ``schema_validation`` metric accepts.

Supported, with their JSON Schema (2020-12) meaning: ``type`` (string, number, integer, boolean,
object, array, null, or a list of them; a boolean is not a number, ``3.0`` is an integer),
``enum`` and ``const`` (JSON equality: ``1 == 1.0``, ``true != 1``), ``properties``, ``required``,
``additionalProperties`` (boolean or schema), ``items`` (one schema for all items), ``minItems``,
``maxItems``, ``uniqueItems``, ``minLength`` and ``maxLength`` (code points), ``pattern``
(Python ``re.search``), ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``
(numbers), ``anyOf``, ``oneOf``, ``allOf``, ``not``. Annotations (:data:`IGNORED_KEYWORDS`) are
ignored. Any other keyword (``$ref``, ``format``, ...) is rejected by :func:`check_schema`, so
that no schema passes because part of it was silently skipped.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from typing import Any

SUPPORTED_KEYWORDS: frozenset[str] = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "not",
})  # fmt: skip
#: Annotation keywords: accepted anywhere in a schema and otherwise ignored.
IGNORED_KEYWORDS: frozenset[str] = frozenset(
    {"title", "description", "$schema", "$id", "$comment", "examples", "default"}
)

_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string",
               dict: "object", list: "array", type(None): "null"}  # fmt: skip
_PYTHON_TYPES = {name: python_type for python_type, name in _TYPE_NAMES.items()}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_Schema = dict[str, Any]
_BOUND_CHECKS = (
    ("minimum", operator.ge, "less than the minimum"),
    ("maximum", operator.le, "greater than the maximum"),
    ("exclusiveMinimum", operator.gt, "not greater than"),
    ("exclusiveMaximum", operator.lt, "not less than"),
)


# --- JSON values ---------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return _is_number(value) and (not isinstance(value, float) or value.is_integer())


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number"):
        return _is_integer(value) if name == "integer" else _is_number(value)
    return isinstance(value, _PYTHON_TYPES[name])


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _freeze(value: Any) -> Any:
    """A hashable key under which two values are equal exactly when they are equal in JSON."""
    if isinstance(value, dict):
        return ("object", frozenset((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_freeze(item) for item in value))
    # 1 and 1.0 hash and compare equal in Python, as they are equal in JSON; True is kept apart.
    return ("number", value) if _is_number(value) else (_type_name(value), value)


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # A lone surrogate (JSON allows "\ud800") would make the message unstorable as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _member(path: str, name: str) -> str:
    plain = _IDENTIFIER.fullmatch(name)
    return f"{path}.{name}" if plain else f"{path}[{json.dumps(name, ensure_ascii=False)}]"


# --- checking a schema ---------------------------------------------------------------------
def check_schema(schema: dict[str, Any], path: str = "") -> None:
    """Raise ``ValueError`` naming the path of the first malformed or unsupported part.

    ``path`` is where ``schema`` sits inside an enclosing schema (empty for the root).
    """
    if not isinstance(schema, dict):
        raise ValueError(f"{path or 'schema'}: must be an object (a schema)")
    for keyword, value in schema.items():
        if keyword in IGNORED_KEYWORDS:
            continue
        if keyword not in SUPPORTED_KEYWORDS:
            raise ValueError(
                f"unsupported keyword {keyword!r} at {path or 'the schema root'}; "
                f"supported keywords: {', '.join(sorted(SUPPORTED_KEYWORDS))}"
            )
        _check_keyword(keyword, value, f"{path}.{keyword}" if path else keyword)
    for low, high in (("minItems", "maxItems"), ("minLength", "maxLength")):
        if low in schema and high in schema and schema[low] > schema[high]:
            where = f"{path}.{low}" if path else low
            raise ValueError(f"{where}: {schema[low]} is greater than {high} ({schema[high]})")


def _is_type_list(value: Any) -> bool:
    names = value if isinstance(value, list) else [value]
    known = all(isinstance(name, str) and name in _PYTHON_TYPES for name in names)
    return bool(names) and known and len(set(names)) == len(names)


_COUNT_RULE = (lambda v: _is_integer(v) and v >= 0, "must be a non-negative integer")
_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (_is_type_list, f"must be one of {', '.join(_PYTHON_TYPES)}, or a list of them"),
    "enum": (lambda v: isinstance(v, list) and bool(v), "must be a non-empty array"),
    "required": (
        lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
        "must be an array of property names",
    ),
    "uniqueItems": (lambda v: isinstance(v, bool), "must be true or false"),
    "const": (lambda v: True, ""),
    **dict.fromkeys(("minItems", "maxItems", "minLength", "maxLength"), _COUNT_RULE),
    **dict.fromkeys([keyword for keyword, _, _ in _BOUND_CHECKS], (_is_number, "must be a number")),
}


def _check_keyword(keyword: str, value: Any, where: str) -> None:
    if keyword in _VALUE_RULES:
        holds, problem = _VALUE_RULES[keyword]
        if not holds(value):
            raise ValueError(f"{where}: {problem}")
    elif keyword == "properties":
        if not isinstance(value, dict):
            raise ValueError(f"{where}: must be an object mapping property names to schemas")
        for name, subschema in value.items():
            check_schema(subschema, f"{where}.{name}")
    elif keyword in ("anyOf", "oneOf", "allOf"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: must be a non-empty array of schemas")
        for index, subschema in enumerate(value):
            check_schema(subschema, f"{where}[{index}]")
    elif keyword == "pattern":
        if not isinstance(value, str):
            raise ValueError(f"{where}: must be a string (a regular expression)")
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"{where}: not a valid regular expression: {error}") from None
    elif not (keyword == "additionalProperties" and isinstance(value, bool)):
        check_schema(value, where)  # items, not, additionalProperties: one schema


# --- validating an instance ----------------------------------------------------------------
def validate(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Return the violations of ``schema`` by ``instance``, each prefixed with its path.

    Paths look like ``$.items[2].name``; an empty list means the instance is valid. ``schema``
    is checked first: a malformed one raises ``ValueError`` as :func:`check_schema` does.
    """
    check_schema(schema)
    return _validate(instance, schema, "$")


def _validate(instance: Any, schema: _Schema, path: str) -> list[str]:
    errors = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, name) for name in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_type_name(instance)}")
    if "enum" in schema and _freeze(instance) not in {_freeze(v) for v in schema["enum"]}:
        errors.append(f"{path}: {_show(instance)} is not one of {_show(schema['enum'])}")
    if "const" in schema and _freeze(instance) != _freeze(schema["const"]):
        errors.append(f"{path}: expected {_show(schema['const'])}, got {_show(instance)}")
    if isinstance(instance, dict):
        errors += _validate_object(instance, schema, path)
    elif isinstance(instance, list):
        errors += _validate_array(instance, schema, path)
    elif isinstance(instance, str):
        errors += _validate_size(len(instance), "characters", "Length", schema, path)
        if "pattern" in schema and re.search(schema["pattern"], instance) is None:
            pattern = _show(schema["pattern"])
            errors.append(f"{path}: {_show(instance)} does not match pattern {pattern}")
    elif _is_number(instance):
        for keyword, holds, wording in _BOUND_CHECKS:
            if keyword in schema and not holds(instance, schema[keyword]):
                errors.append(f"{path}: {_show(instance)} is {wording} {_show(schema[keyword])}")
    return errors + _validate_combinators(instance, schema, path)


def _validate_object(instance: dict[str, Any], schema: _Schema, path: str) -> list[str]:
    errors = [
        f"{path}: missing required property {_show(name)}"
        for name in schema.get("required", [])
        if name not in instance
    ]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, value in instance.items():
        if name in properties:
            errors += _validate(value, properties[name], _member(path, name))
        elif extra is False:
            errors.append(f"{path}: property {_show(name)} is not allowed")
        elif isinstance(extra, dict):
            errors += _validate(value, extra, _member(path, name))
    return errors


def _validate_array(instance: list[Any], schema: _Schema, path: str) -> list[str]:
    errors = _validate_size(len(instance), "items", "Items", schema, path)
    if schema.get("uniqueItems"):
        first_seen: dict[Any, int] = {}
        for index, item in enumerate(instance):
            earlier = first_seen.setdefault(_freeze(item), index)
            if earlier != index:
                errors.append(f"{path}: items must be unique; [{index}] repeats [{earlier}]")
                break
    for index, item in enumerate(instance if "items" in schema else []):
        errors += _validate(item, schema["items"], f"{path}[{index}]")
    return errors


def _validate_size(size: int, noun: str, suffix: str, schema: _Schema, path: str) -> list[str]:
    low, high = schema.get(f"min{suffix}", 0), schema.get(f"max{suffix}", math.inf)
    if size < low:
        return [f"{path}: expected at least {low} {noun[:-1] if low == 1 else noun}, got {size}"]
    if size > high:
        return [f"{path}: expected at most {high} {noun[:-1] if high == 1 else noun}, got {size}"]
    return []


def _validate_combinators(instance: Any, schema: _Schema, path: str) -> list[str]:
    errors = [e for sub in schema.get("allOf", []) for e in _validate(instance, sub, path)]
    for keyword in ("anyOf", "oneOf"):
        failures = [_validate(instance, subschema, path) for subschema in schema.get(keyword, [])]
        matched = [f"[{index}]" for index, found in enumerate(failures) if not found]
        if failures and not matched:
            firsts = "; ".join(f"[{index}] {found[0]}" for index, found in enumerate(failures))
            errors.append(f"{path}: matches none of the {keyword} schemas ({firsts})")
        elif keyword == "oneOf" and len(matched) > 1:
            errors.append(f"{path}: matches oneOf schemas {', '.join(matched)}, not exactly one")
    if "not" in schema and not _validate(instance, schema["not"], path):
        errors.append(f"{path}: must not match the schema under 'not'")
    return errors
