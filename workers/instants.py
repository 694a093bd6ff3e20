"""Points in time as people type and read them: epoch milliseconds or ISO times, UTC.

The CLI's ``--since``/``--until`` and the dashboard's filters read them the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime


def instant_ms(value: str | None, field: str) -> int | None:
    """Milliseconds since the epoch from ``1764160000000`` or ``2026-11-26T12:00`` (UTC if no
    offset is given); None for None or blank.

    Raises:
      ValueError: naming ``field``, when ``value`` is neither.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{field}: {value!r} is neither an ISO time nor epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
