"""The filters of the dead-letter and history pages, parsed from a query string or a form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from middleware.state.dead_letter_record import DeadLetterRecord
from workers.instants import instant_ms

MAX_LIMIT = 200


class BadFilter(ValueError):
    """A filter value a person typed is wrong; the message names the field."""


def instant(value: str | None, field: str) -> int | None:
    """Milliseconds since the epoch from epoch ms or an ISO time (UTC without an offset)."""
    try:
        return instant_ms(value, field)
    except ValueError as error:
        raise BadFilter(str(error)) from None


def limit_of(params: Mapping[str, str], default: int = 50) -> int:
    """The page size asked for, 1..MAX_LIMIT."""
    raw = params.get("limit") or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadFilter(f"limit: must be a whole number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = (params.get(name) or "").strip()
    return value or None


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a page or a bulk action covers; None means any."""

    queue: str | None = None
    category: str | None = None
    rule: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> DeadLetterFilter:
        """The filter from ``queue``, ``category``, ``rule``, ``since`` and ``until``."""
        return cls(
            queue=_text(params, "queue"),
            category=_text(params, "category"),
            rule=_text(params, "rule"),
            since_ms=instant(params.get("since"), "since"),
            until_ms=instant(params.get("until"), "until"),
        )

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> DeadLetterFilter:
        """The filter as ``as_dict`` wrote it."""
        return cls(**{key: document.get(key) for key in asdict(cls())})

    def as_dict(self) -> dict[str, Any]:
        """The filter as JSON (the bulk action record, the API)."""
        return asdict(self)

    def matches(self, record: DeadLetterRecord) -> bool:
        """Whether ``record`` passes the filters the store's indexes do not apply (the rule)."""
        return self.rule is None or record.rule == self.rule

    def describe(self) -> str:
        """The filter in words, for confirmations and the action log."""
        parts = [f"{key}={value}" for key, value in self.as_dict().items() if value is not None]
        return ", ".join(parts) or "every dead letter"


@dataclass(frozen=True)
class JobFilter:
    """Which jobs the history page lists; None means any."""

    queue: str | None = None
    state: str | None = None
    actor: str | None = None
    category: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> JobFilter:
        """The filter from ``queue``, ``state``, ``actor``, ``category``, ``since``, ``until``."""
        return cls(
            queue=_text(params, "queue"),
            state=_text(params, "state"),
            actor=_text(params, "actor"),
            category=_text(params, "category"),
            since_ms=instant(params.get("since"), "since"),
            until_ms=instant(params.get("until"), "until"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The filter as keyword arguments of ``search_jobs``."""
        return asdict(self)
