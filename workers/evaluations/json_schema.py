"""JSON Schema for evalq, on the ``jsonschema`` library: full Draft 2020-12, nothing fetched.

Two users: the ``schema_validation`` rule metric (does the output conform to the user's schema?)
and the ``custom`` LLM judge (does the judge's verdict conform to the user's verdict schema?).

- **Drafts.** A schema is read as Draft 2020-12 unless its ``$schema`` names another draft
  ``jsonschema`` knows (2019-09, 7, 6, 4, 3).
- **References.** ``$ref`` and ``$defs`` (and ``$id``/``$anchor``) resolve within the schema
  itself and against the bundled meta-schemas. Remote references are refused: resolving one
  would make a worker fetch a URL chosen by whoever submitted the request. Every ``$ref`` is
  resolved once by :func:`check_schema`, so a dangling or remote one is a bad request line, not
  a failed job.
- **Formats** are annotations unless ``check_formats`` is on. With it on, a schema may only use
  the formats this installation actually checks (:data:`CHECKED_FORMATS`), so that no output
  passes because its format was silently skipped.

Validators are cached by the schema's compact JSON: a batch of jobs sharing one evaluation
builds its validator, and checks its schema, once per worker process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing._core import Resolver  # the type resolver_with_root() returns; not re-exported

#: The draft a schema without ``$schema`` is read as.
DEFAULT_DRAFT = jsonschema.Draft202012Validator

#: Formats checked when ``check_formats`` is on (the library's checkers that need no extras).
CHECKED_FORMATS: frozenset[str] = frozenset(DEFAULT_DRAFT.FORMAT_CHECKER.checkers)

#: Keywords whose values are JSON data, not schemas: never searched for ``$ref`` or ``format``.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
#: Keywords whose object values map names to schemas (so a member named "enum" is a schema).
_NAME_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)

#: How many validators (distinct schemas) one process keeps.
CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Violation:
    """One way an instance fails its schema: where (a JSON path such as ``$.items[2].name``)
    and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


def check_schema(schema: dict[str, Any], *, check_formats: bool = False) -> None:
    """Raise ``ValueError`` naming where ``schema`` is malformed, refers outside itself, or (with
    ``check_formats``) uses a format that would not be checked."""
    _checked(_canonical(schema), check_formats)


def validate(
    instance: Any, schema: dict[str, Any], *, check_formats: bool = False
) -> list[Violation]:
    """The violations of ``schema`` by ``instance``, in the library's order; empty when valid.

    ``schema`` is checked first, as :func:`check_schema` does. A ``RecursionError`` (an instance
    or a recursive schema nested past Python's stack) propagates for the caller to report.
    """
    validator = _checked(_canonical(schema), check_formats)
    return [
        Violation(error.json_path, _clip(error.message))
        for error in validator.iter_errors(instance)
    ]


# --- internals ---------------------------------------------------------------------------------


def _canonical(schema: dict[str, Any]) -> str:
    # Key order kept: it is the order violations are reported in.
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _checked(canonical: str, check_formats: bool) -> Validator:
    """The validator of a checked schema, built once per distinct (schema, check_formats)."""
    schema = json.loads(canonical)
    if not isinstance(schema, dict):
        raise ValueError("a schema must be a JSON object")
    draft = jsonschema.validators.validator_for(schema, default=DEFAULT_DRAFT)
    try:
        draft.check_schema(schema)
    except RecursionError:
        raise ValueError("$: the schema is nested too deeply to check") from None
    except jsonschema.SchemaError as error:
        where = _schema_path(list(error.absolute_path))
        raise ValueError(f"{where}: {_clip(error.message)}") from None
    resource = referencing.Resource.from_contents(
        schema, default_specification=referencing.jsonschema.DRAFT202012
    )
    # The meta-schemas ship with jsonschema; anything else outside the schema is refused.
    registry: referencing.Registry[Any] = META_SCHEMAS.combine(
        referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]
    )
    try:
        _check_references_and_formats(schema, registry.resolver_with_root(resource), check_formats)
    except RecursionError:
        raise ValueError("$: the schema is nested too deeply to check") from None
    format_checker = draft.FORMAT_CHECKER if check_formats else None
    validator: Validator = draft(schema, registry=registry, format_checker=format_checker)
    return validator


def _check_references_and_formats(
    schema: dict[str, Any], resolver: Resolver[Any], check_formats: bool
) -> None:
    for path, subschema, here in _subschemas(schema, [], resolver):
        for keyword in ("$ref", "$dynamicRef"):
            ref = subschema.get(keyword)
            if not isinstance(ref, str):
                continue
            try:
                here.lookup(ref)
            except referencing.exceptions.Unresolvable:
                where = _schema_path([*path, keyword])
                raise ValueError(
                    f"{where}: cannot resolve {ref!r}: references must point inside the schema "
                    "(for example '#/$defs/item'); remote references are not fetched"
                ) from None
        name = subschema.get("format")
        if check_formats and isinstance(name, str) and name not in CHECKED_FORMATS:
            where = _schema_path([*path, "format"])
            raise ValueError(
                f"{where}: format {name!r} is not checked by evalq (checked formats: "
                f"{', '.join(sorted(CHECKED_FORMATS))}); remove it, or set check_formats to "
                "false to treat every format as an annotation"
            )


def _subschemas(
    node: Any, path: list[str | int], resolver: Resolver[Any], *, names: bool = False
) -> Iterator[tuple[list[str | int], dict[str, Any], Resolver[Any]]]:
    """Every schema object inside ``node`` with its path and the resolver in force there (an
    ``$id`` changes the base that relative references resolve against)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _subschemas(item, [*path, index], resolver)
        return
    if not isinstance(node, dict):
        return
    if names:  # a map of names to schemas: every member is a schema
        for name, item in node.items():
            yield from _subschemas(item, [*path, name], resolver)
        return
    if isinstance(node.get("$id"), str):
        resolver = resolver.in_subresource(referencing.jsonschema.DRAFT202012.create_resource(node))
    yield path, node, resolver
    for keyword, value in node.items():
        if keyword not in _DATA_KEYWORDS:
            yield from _subschemas(value, [*path, keyword], resolver, names=keyword in _NAME_MAPS)


def _schema_path(parts: list[str | int]) -> str:
    """A place inside a schema, written as a JSON path: ``$.properties.age.type``."""
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _clip(text: str, limit: int = 200) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # A lone surrogate (JSON allows "\ud800") would make the message unstorable as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
