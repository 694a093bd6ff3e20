"""What a person reads about a bad policy file: ``<key path>: <what is wrong>``, one per problem.

Turns TOML syntax errors and pydantic validation errors into lines that name the key as it is
written in the file (``rules[3].message``, ``queues."a.b".defaults``), say what is wrong in the
file's own terms (tables, arrays, ``true``) and, for a misspelt key, the key that was probably
meant. ``config.policy`` puts the file name in front.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from config.errors import did_you_mean

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def describe_toml_error(error: tomllib.TOMLDecodeError) -> str:
    """A TOML syntax error as ``line <n>: <what> (column <c>)``."""
    message = str(error)
    found = _TOML_POSITION.search(message)
    if found is None:
        return f"invalid TOML: {message}"
    what = message[: found.start()]
    line, column = found.groups()
    return f"line {line}: {what} (column {column})"


def describe_validation_error(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """Each problem of ``error``, raised validating ``root``, as ``<key path>: <what>``."""
    return [_describe(item, root) for item in error.errors(include_url=False)]


def key_path(loc: tuple[int | str, ...]) -> str:
    """Render a location as a TOML key path: ``rules[3].message``, ``queues."a.b".defaults``."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        shown = part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'
        out += f".{shown}" if out else shown
    return out or "(top level)"


def _describe(item: Any, root: type[BaseModel]) -> str:
    loc: tuple[int | str, ...] = tuple(item["loc"])
    kind = item["type"]
    value = item.get("input")
    if kind == "value_error":
        what = str(item["ctx"]["error"])
        if what.startswith("version: "):  # raised before the fields are known
            return what
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        hint = did_you_mean(str(loc[-1]), allowed)
        what = f"unknown key; {hint}expected one of: {', '.join(allowed)}"
    elif kind == "missing":
        what = "required key is missing"
    elif kind in ("model_type", "dict_type"):
        what = f"must be a table, not {_toml_repr(value)}"
    elif kind == "list_type":
        what = f"must be an array such as [{_toml_repr(value)}], not {_toml_repr(value)}"
    else:
        what = f"{item['msg'][0].lower()}{item['msg'][1:]} (got {_toml_repr(value)})"
    return f"{key_path(loc)}: {what}"


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at ``loc`` under ``root`` accepts (aliases as written in the file)."""
    node: Any = root
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = {f.alias or n: f for n, f in node.model_fields.items()}
            if part not in fields:
                return []
            node = _unwrap(fields[str(part)].annotation)
        else:  # a dict value or a list item
            args = typing.get_args(node)
            node = _unwrap(args[-1]) if args else None
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation
