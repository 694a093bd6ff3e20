"""Reading policy files and layering a user's file over the shipped one.

The shipped ``config/policies.toml`` is the base layer. A user's file (``EVALQ_POLICY_FILE``)
layers over it unless it says ``extends = "none"``:

- its ``[[rules]]`` are tried before the shipped rules; a user rule with the ``name`` of a shipped
  rule replaces that rule;
- its ``[defaults]``, ``[categories.C]``, ``[environments.E]``, ``[queues."Q"]`` and
  ``[actors.A]`` tables override the shipped ones field by field: a field the user's table does
  not set keeps the shipped value.

Every value of the merged policy remembers where it came from (``shipped`` or ``FILE:KEY``), for
``evalq policy check``; every rule remembers its layer, for ``evalq policy explain``.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from config.policy import (
    BUILTIN_DEFAULTS,
    CompiledRule,
    DefaultsTable,
    OverrideTable,
    Policy,
    PolicyError,
    PolicyFile,
)
from config.policy_errors import describe_toml_error, describe_validation_error, key_path

#: The shipped policy: the base layer of every user's file.
SHIPPED_POLICY_FILE = Path(__file__).with_name("policies.toml")
#: How the shipped layer is named in provenance and rule layers.
SHIPPED = "shipped"

T = TypeVar("T", bound=BaseModel)


def load_layered_policy(path: str | Path) -> Policy:
    """The policy of the file at ``path``: over the shipped layer unless it says
    ``extends = "none"`` (the shipped file itself is its own, single layer)."""
    source = str(path)
    document = read_document(path)
    if _is_shipped(Path(path)):
        return _single_layer(document, SHIPPED)
    if document.extends == "none":
        return _single_layer(document, source)
    return layer(document, source, over=shipped_document())


def read_document(path: str | Path) -> PolicyFile:
    """Read and validate one policy file on its own; raise ``PolicyError`` naming it."""
    source = str(path)
    file = Path(path)
    if not file.exists():
        raise PolicyError([f"{source}: does not exist"])
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as error:
        raise PolicyError([f"{source}: cannot be read: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise PolicyError([f"{source}: not UTF-8 text (byte {error.start})"]) from None
    return parse_document(text, source=source)


def parse_document(text: str, *, source: str = "<policy>") -> PolicyFile:
    """Validate policy-file text (TOML) on its own; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError([f"{source}: {describe_toml_error(error)}"]) from None
    try:
        document = PolicyFile.model_validate(data)
    except ValidationError as error:
        problems = describe_validation_error(error, PolicyFile)
        raise PolicyError([f"{source}: {p}" for p in problems]) from None
    problems = _cross_checks(document)
    if problems:
        raise PolicyError([f"{source}: {p}" for p in problems])
    return document


@functools.cache
def shipped_document() -> PolicyFile:
    """The shipped policy file, read once per process."""
    return read_document(SHIPPED_POLICY_FILE)


def layer(user: PolicyFile, source: str, *, over: PolicyFile) -> Policy:
    """``user`` (read from ``source``) layered over ``over`` (the shipped document)."""
    user_rules = [CompiledRule.compile(i, r, layer=source) for i, r in enumerate(user.rules)]
    replaced = {rule.name for rule in user_rules}
    base_rules = [
        CompiledRule.compile(i, r, layer=SHIPPED)
        for i, r in enumerate(over.rules)
        if r.name not in replaced
    ]
    merged = PolicyFile.model_construct(
        version=user.version,
        extends=user.extends,
        defaults=_merge_table(over.defaults, user.defaults) or DefaultsTable(),
        categories=_merge_tables(over.categories, user.categories),
        rules=[*user.rules, *(r for r in over.rules if r.name not in replaced)],
        environments=_merge_overrides(over.environments, user.environments),
        queues=_merge_overrides(over.queues, user.queues),
        actors=_merge_overrides(over.actors, user.actors),
    )
    origins = {path: SHIPPED for path in _value_paths(over)}
    origins.update({path: f"{source}:{path}" for path in _value_paths(user)})
    return Policy(merged, source, rules=(*user_rules, *base_rules), origins=origins)


def _single_layer(document: PolicyFile, source: str) -> Policy:
    origins = {path: source if source == SHIPPED else f"{source}:{path}"
               for path in _value_paths(document)}  # fmt: skip
    rules = tuple(CompiledRule.compile(i, r, layer=source) for i, r in enumerate(document.rules))
    return Policy(document, source, rules=rules, origins=origins)


def _merge_table(base: T | None, over: T | None) -> T | None:
    """``over``'s fields set, else ``base``'s (not validated again: layers may combine a
    minimum above a maximum, which resolution clamps)."""
    if base is None or over is None:
        return over if base is None else base
    return base.model_copy(update=over.model_dump(exclude_none=True))


def _merge_tables(base: dict[str, T], over: dict[str, T]) -> dict[str, T]:
    merged = dict(base)
    for name, table in over.items():
        merged[name] = _merge_table(base.get(name), table)  # type: ignore[assignment]
    return merged


def _merge_overrides(
    base: dict[str, OverrideTable], over: dict[str, OverrideTable]
) -> dict[str, OverrideTable]:
    merged = dict(base)
    for name, table in over.items():
        below = base.get(name)
        if below is None:
            merged[name] = table
            continue
        merged[name] = OverrideTable.model_construct(
            defaults=_merge_table(below.defaults, table.defaults),
            categories=_merge_tables(below.categories, table.categories),
        )
    return merged


def _value_paths(document: PolicyFile) -> list[str]:
    """The key path of every value a file sets in its tables (rules aside)."""
    data = document.model_dump(exclude_none=True, exclude={"version", "extends", "rules"})
    paths: list[str] = []

    def walk(node: Any, loc: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, str(key)))
        else:
            paths.append(key_path(loc))

    walk(data, ())
    return paths


def _cross_checks(document: PolicyFile) -> list[str]:
    """Problems no single table shows: duplicate rule names, base backoff bounds."""
    problems = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(document.rules):
        if rule.name is None:
            continue
        if rule.name in seen:
            problems.append(
                f"rules[{index}].name: {rule.name!r} is already the name of "
                f"rules[{seen[rule.name]}]"
            )
        seen.setdefault(rule.name, index)
    defaults = document.defaults or DefaultsTable()
    low_default = _or(defaults.min_backoff_ms, BUILTIN_DEFAULTS["min_backoff_ms"])
    high_default = _or(defaults.max_backoff_ms, BUILTIN_DEFAULTS["max_backoff_ms"])
    if low_default > high_default:
        problems.append(
            f"defaults.min_backoff_ms: {low_default} is greater than max_backoff_ms "
            f"({high_default})"
        )
    for name, table in document.categories.items():
        low = _or(table.min_backoff_ms, low_default)
        high = _or(table.max_backoff_ms, high_default)
        if low > high:
            field = "min_backoff_ms" if table.min_backoff_ms is not None else "max_backoff_ms"
            problems.append(
                f"categories.{name}.{field}: the category's min_backoff_ms ({low}) would be "
                f"greater than its max_backoff_ms ({high})"
            )
    return problems


def _or(value: int | None, fallback: int | float) -> int:
    return int(fallback) if value is None else value


def _is_shipped(path: Path) -> bool:
    try:
        return path.resolve() == SHIPPED_POLICY_FILE.resolve()
    except OSError:
        return False
