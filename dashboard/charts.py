"""The overview's chart: attempts per minute as server-rendered SVG polylines (no JS library)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 600
HEIGHT = 140
PAD = 4


@dataclass(frozen=True)
class Line:
    """One series: its label, CSS class, SVG ``points`` and total over the window."""

    label: str
    css_class: str
    points: str
    total: int


def chart_lines(series: dict[str, Any]) -> tuple[list[Line], int]:
    """The polylines of ``outcome_series``'s result, and the highest per-minute value."""
    named = [("succeeded", series["succeeded"])] + [
        (f"failed: {category}", values) for category, values in series["failed_by_category"].items()
    ]
    peak = max([1, *(max(values, default=0) for _, values in named)])
    lines = []
    for index, (label, values) in enumerate(named):
        css = "series-ok" if index == 0 else f"series-{(index - 1) % 8}"
        lines.append(Line(label, css, _points(values, peak), sum(values)))
    return lines, peak


def _points(values: list[int], peak: int) -> str:
    if not values:
        return ""
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    usable = HEIGHT - 2 * PAD
    return " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - usable * value / peak:.1f}"
        for i, value in enumerate(values)
    )
