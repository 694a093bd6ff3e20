"""The chart of ``bench_throughput``: median jobs/s per scenario, bare Dramatiq beside evalq."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

COLOURS = {"bare": "#7f8c8d", "evalq": "#2e86de"}
LABELS = {"bare": "bare Dramatiq (default middleware)", "evalq": "evalq full stack"}


def render(details: dict[str, Any], path: Path) -> None:
    """Draw grouped bars of the median jobs/s (send(): enqueues/s) of each stack to ``path``."""
    scenarios = list(details["scenarios"])
    width = 0.38
    figure, axes = plt.subplots(figsize=(10, 4.8), dpi=110)
    for offset, stack in ((-width / 2, "bare"), (width / 2, "evalq")):
        values = [
            statistics.median(t["jobs_per_s"] for t in details["scenarios"][s][stack])
            for s in scenarios
        ]
        bars = axes.bar([i + offset for i in range(len(scenarios))], values, width,
                        label=LABELS[stack], color=COLOURS[stack])  # fmt: skip
        axes.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    axes.set_xticks(range(len(scenarios)), scenarios, rotation=15, ha="right")
    axes.set_ylabel("jobs/s (send(): enqueues/s), median")
    versions = details["versions"]
    axes.set_title(
        f"evalq vs bare Dramatiq {versions['dramatiq']}: {details['jobs']:,} jobs x "
        f"{details['trials']} trials, {details['cpus']} CPUs, Python {versions['python']}",
        fontsize=10,
    )
    axes.legend(fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
