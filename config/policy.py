"""The error-policy file: its format, its loader and how a category's policy is resolved.

A policy file (TOML, ``version = 1``) says, per error category, whether a failed job is retried
(and how often, how long to wait) or dead-lettered, plus ordered rules that put an exception in a
category. ``load_policy`` validates it completely and raises ``PolicyError`` naming the file, the
key and what is wrong (worded by ``config.policy_errors``); ``Policy.resolve`` answers "what do
we do with category C for this actor on this queue in this environment".

Resolution, per field, narrowest layer first: ``[actors.<actor>]`` > ``[queues."<queue>"]`` >
``[environments.<env>]`` > the base tables.

- ``action``, ``max_retries``, ``honor_retry_after``, ``report``: the narrowest
  ``categories.<C>`` table that sets the field; else ``dead_letter``, ``0``, ``false``, ``false``.
  So a category the file never mentions is dead-lettered at once and not reported.
- ``min_backoff_ms``, ``max_backoff_ms``, ``jitter``: the narrowest ``categories.<C>`` table that
  sets the field; if none does, the narrowest ``defaults`` table that does; else the built-in
  ``BUILTIN_DEFAULTS``.
- ``max_attempts`` (per job, all categories together): the narrowest ``defaults`` table.

One table may not set ``min_backoff_ms`` above ``max_backoff_ms``, nor may the base tables taken
together; when layers combine to do so, ``max_backoff_ms`` wins (the minimum is lowered to it).

A user's file is layered over the shipped one by ``config.policy_loader`` (``load_policy``):
its rules first, its tables merged field by field, each value remembering its origin.

Rules keep file order. A rule's display name, used by ``evalq policy explain``, in classification
results and in dead-letter records, is its ``name`` when given, else ``rules[i]`` (0-based, the
same key path a policy error would print).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from config.errors import ConfigurationError, did_you_mean
from config.settings import Environment

#: The error categories, in the order of the architecture document. The one list of them.
CATEGORIES: tuple[str, ...] = (
    "rate_limited",
    "provider_unavailable",
    "timeout",
    "invalid_model_output",
    "model_capability",
    "context_length",
    "quota_exhausted",
    "auth",
    "invalid_request",
    "invalid_payload",
    "content_filtered",
    "time_limit",
    "crashed",
    "aborted",
    "expired",
    "retry_requested",
    "store_unavailable",
    "unknown",
)

Action = Literal["retry", "dead_letter", "drop"]
ACTIONS: tuple[Action, ...] = ("retry", "dead_letter", "drop")
ENVIRONMENTS: tuple[str, ...] = typing.get_args(Environment)
POLICY_VERSION = 1

#: Values used when no ``defaults`` table sets them.
BUILTIN_DEFAULTS: dict[str, int | float] = {
    "max_attempts": 12,
    "min_backoff_ms": 1000,
    "max_backoff_ms": 300_000,
    "jitter": 0.25,
}


class PolicyError(ConfigurationError):
    """A policy file that cannot be used; one line per problem: ``<file>: <key>: <what>``."""

    kind = "invalid policy file"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def _known(value: str, known: tuple[str, ...], what: str) -> str:
    if value not in known:
        hint = did_you_mean(value, known)
        raise ValueError(f"unknown {what}; {hint}expected one of: {', '.join(known)}")
    return value


def _category(value: str) -> str:
    return _known(value, CATEGORIES, "category")


def _environment(value: str) -> str:
    return _known(value, ENVIRONMENTS, "environment")


Category = Annotated[str, AfterValidator(_category)]
EnvironmentName = Annotated[str, AfterValidator(_environment)]
_NonNegativeInt = Annotated[int, Field(ge=0)]


class _Table(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> typing.Self:
        low = getattr(self, "min_backoff_ms", None)
        high = getattr(self, "max_backoff_ms", None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_backoff_ms ({low}) is greater than max_backoff_ms ({high})")
        return self


class DefaultsTable(_Table):
    """``[defaults]``: the job-wide cap and the backoff every category starts from."""

    max_attempts: int | None = Field(None, ge=1)
    min_backoff_ms: _NonNegativeInt | None = None
    max_backoff_ms: _NonNegativeInt | None = None
    jitter: float | None = Field(None, ge=0, le=1)


class CategoryTable(_Table):
    """``[categories.<name>]``: what happens to a job failing with this category."""

    action: Action | None = None
    max_retries: _NonNegativeInt | None = None
    min_backoff_ms: _NonNegativeInt | None = None
    max_backoff_ms: _NonNegativeInt | None = None
    jitter: float | None = Field(None, ge=0, le=1)
    honor_retry_after: bool | None = None
    report: bool | None = None


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None
    return pattern


def _dotted(name: str) -> str:
    if not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"{name!r} is not a dotted class name such as openai.RateLimitError")
    return name


def _http_status(status: int) -> int:
    if not 100 <= status <= 599:
        raise ValueError(f"{status} is not an HTTP status (100..599)")
    return status


class RuleTable(_Table):
    """``[[rules]]``: puts an exception in ``category`` when all its matchers match one link."""

    category: Category
    name: str | None = None
    exception: list[Annotated[str, AfterValidator(_dotted)]] | None = None
    message: Annotated[str, AfterValidator(_regex)] | None = None
    status: list[Annotated[int, AfterValidator(_http_status)]] | None = None
    code: list[str] | None = None
    error_type: list[str] | None = Field(None, alias="type")

    @model_validator(mode="after")
    def _has_matcher(self) -> typing.Self:
        matchers = (self.exception, self.message, self.status, self.code, self.error_type)
        if all(m is None for m in matchers):
            raise ValueError("a rule needs at least one of exception, message, status, code, type")
        if self.name is not None and (not self.name.strip() or self.name == "explicit"):
            raise ValueError(f"name {self.name!r} is empty or reserved")
        return self


class OverrideTable(_Table):
    """``[environments.<env>]``, ``[queues."<queue>"]``, ``[actors.<actor>]``."""

    defaults: DefaultsTable | None = None
    categories: dict[Category, CategoryTable] = Field(default_factory=dict)


class PolicyFile(_Table):
    """The whole policy file, as validated. ``extends`` says what it layers over: the shipped
    policy (``"shipped"``, the default) or nothing (``"none"``)."""

    version: int
    extends: Literal["shipped", "none"] = "shipped"
    defaults: DefaultsTable = Field(default_factory=DefaultsTable)
    categories: dict[Category, CategoryTable] = Field(default_factory=dict)
    rules: list[RuleTable] = Field(default_factory=list)
    environments: dict[EnvironmentName, OverrideTable] = Field(default_factory=dict)
    queues: dict[str, OverrideTable] = Field(default_factory=dict)
    actors: dict[str, OverrideTable] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _version_first(cls, data: Any) -> Any:
        # A file of another version is not worth validating key by key.
        if isinstance(data, dict) and "version" in data and data["version"] != POLICY_VERSION:
            raise ValueError(
                f"version: unsupported version {data['version']!r}; "
                f"this evalq reads version {POLICY_VERSION}"
            )
        return data


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One ``[[rules]]`` entry, ready to match: regex compiled, lists turned into sets.

    ``exception_keys`` holds each dotted name split at its last dot as ``(prefix, name)``; the
    matching itself lives in ``middleware.core.classify`` and never imports anything. ``layer``
    is where the rule was written: ``built-in``, ``shipped`` or the user's file.
    """

    index: int
    name: str
    category: str
    exception: tuple[str, ...]
    exception_keys: tuple[tuple[str, str], ...]
    message: re.Pattern[str] | None
    status: frozenset[int] | None
    code: frozenset[str] | None
    error_type: frozenset[str] | None
    layer: str = "shipped"

    @classmethod
    def compile(cls, index: int, rule: RuleTable, *, layer: str = "shipped") -> CompiledRule:
        names = tuple(rule.exception or ())
        return cls(
            index=index,
            name=rule.name if rule.name is not None else f"rules[{index}]",
            category=rule.category,
            exception=names,
            exception_keys=tuple((n.rpartition(".")[0], n.rpartition(".")[2]) for n in names),
            message=re.compile(rule.message) if rule.message is not None else None,
            status=frozenset(rule.status) if rule.status is not None else None,
            code=frozenset(rule.code) if rule.code is not None else None,
            error_type=frozenset(rule.error_type) if rule.error_type is not None else None,
            layer=layer,
        )


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """What to do with one category for one actor, queue and environment."""

    category: str
    action: Action
    max_retries: int
    max_attempts: int
    min_backoff_ms: int
    max_backoff_ms: int
    jitter: float
    honor_retry_after: bool
    report: bool

    @property
    def attempts_allowed(self) -> int:
        """How many times a job whose every attempt fails with this category runs."""
        if self.action != "retry":
            return 1
        return min(self.max_retries + 1, self.max_attempts)


#: Where a value no table sets comes from, in ``Policy.origins_of``.
BUILT_IN = "built-in"


class Policy:
    """A validated policy (one file, or a user's file layered over the shipped one): compiled
    rules, in the order they are tried, and cached per-category resolution.

    Parameters:
      document: The validated tables (for a layered policy, the layers merged field by field).
      source: Where it came from (the user's file), for messages.
      rules: The compiled rules in the order they are tried (default: ``document``'s own).
      origins: Per key path of ``document`` (``categories.timeout.max_retries``), the layer that
        set it: ``shipped`` or ``FILE:KEY``. Default: every value from ``source``.
    """

    def __init__(
        self,
        document: PolicyFile,
        source: str = "<policy>",
        *,
        rules: tuple[CompiledRule, ...] | None = None,
        origins: dict[str, str] | None = None,
    ) -> None:
        self.document = document
        self.source = source
        self.rules: tuple[CompiledRule, ...] = (
            rules
            if rules is not None
            else tuple(
                CompiledRule.compile(i, rule, layer=source) for i, rule in enumerate(document.rules)
            )
        )
        self.origins = origins
        self._base = OverrideTable(defaults=document.defaults, categories=document.categories)
        self._cache: dict[tuple[str, str, str, str], ResolvedPolicy] = {}

    def resolve(self, category: str, *, actor: str, queue: str, env: str) -> ResolvedPolicy:
        """The policy of ``category`` for this actor, queue and environment (narrowest wins)."""
        key = (category, actor, queue, env)
        cached = self._cache.get(key)
        if cached is None:
            cached, _ = _resolve(category, self._layers(category, actor, queue, env))
            self._cache[key] = cached
        return cached

    def origins_of(self, category: str, *, actor: str, queue: str, env: str) -> dict[str, str]:
        """Per field of ``resolve(...)``, where its value came from: ``shipped``, ``FILE:KEY``
        or ``built-in`` (no table sets it)."""
        _, paths = _resolve(category, self._layers(category, actor, queue, env))
        return {field: self.origin(path) for field, path in paths.items()}

    def origin(self, path: str | None) -> str:
        """The layer that set the value at key path ``path`` (None: no table set it)."""
        if path is None:
            return BUILT_IN
        if self.origins is None:
            return f"{self.source}:{path}"
        return self.origins.get(path, BUILT_IN)

    def _layers(
        self, category: str, actor: str, queue: str, env: str
    ) -> list[tuple[str, OverrideTable]]:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        layers = [
            (f"actors.{_quoted(actor)}.", self.document.actors.get(actor)),
            (f"queues.{_quoted(queue)}.", self.document.queues.get(queue)),
            (f"environments.{env}.", self.document.environments.get(env)),
            ("", self._base),
        ]
        return [(prefix, layer) for prefix, layer in layers if layer is not None]


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _quoted(key: str) -> str:
    return key if _BARE_KEY.match(key) else '"' + key.replace('"', '\\"') + '"'


def _resolve(
    category: str, layers: list[tuple[str, OverrideTable]]
) -> tuple[ResolvedPolicy, dict[str, str | None]]:
    """The resolved policy and, per field, the key path of the table entry that set it."""
    tables = [
        (f"{prefix}categories.{category}.", table)
        for prefix, layer in layers
        if (table := layer.categories.get(category)) is not None
    ]
    defaults = [
        (f"{prefix}defaults.", layer.defaults) for prefix, layer in layers if layer.defaults
    ]
    paths: dict[str, str | None] = {}

    def pick(field: str, fallback: Any, *, from_defaults: bool = True) -> Any:
        candidates: list[tuple[str, Any]] = list(tables)
        if from_defaults:
            candidates += defaults
        for prefix, table in candidates:
            value = getattr(table, field, None)
            if value is not None:
                paths[field] = prefix + field
                return value
        paths[field] = None
        return BUILTIN_DEFAULTS[field] if from_defaults else fallback

    max_backoff = int(pick("max_backoff_ms", None))
    resolved = ResolvedPolicy(
        category=category,
        action=pick("action", "dead_letter", from_defaults=False),
        max_retries=int(pick("max_retries", 0, from_defaults=False)),
        max_attempts=int(pick("max_attempts", None)),
        min_backoff_ms=min(int(pick("min_backoff_ms", None)), max_backoff),
        max_backoff_ms=max_backoff,
        jitter=float(pick("jitter", None)),
        honor_retry_after=bool(pick("honor_retry_after", False, from_defaults=False)),
        report=bool(pick("report", False, from_defaults=False)),
    )
    return resolved, paths


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file, layered over the shipped one unless it says
    ``extends = "none"``; raise ``PolicyError`` listing every problem."""
    from config.policy_loader import load_layered_policy

    return load_layered_policy(path)


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Validate policy-file text (TOML) as a policy of its own, not layered; ``source`` names
    it in errors."""
    from config.policy_loader import parse_document

    return Policy(parse_document(text, source=source), source)
