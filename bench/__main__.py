"""Run every ``bench/bench_*.py`` module: ``python -m bench [NAME ...]`` (only modules whose name
contains one of the NAMEs, e.g. ``python -m bench throughput``).

Each module's ``run()`` returns rows ``{"name", "value", "unit", "baseline", "ratio", "target",
"ok"}``; the baseline is measured in the same run, so ratios compare across machines. The table
goes to stdout, the rows to ``bench/results/latest.json``; the exit status is 1 when a row misses
its target.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"


def main(only: list[str]) -> int:
    """Run the benchmarks (those whose module name contains one of ``only``, when given)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(HERE.glob("bench_*.py")):
        if only and not any(name in path.stem for name in only):
            continue
        module = importlib.import_module(f"bench.{path.stem}")
        for row in module.run():
            rows.append({"module": path.stem, **row})
    print(f"{'benchmark':<48} {'value':>12} {'baseline':>12} {'ratio':>8} {'target':>12}  ok")
    for row in rows:
        print(
            f"{row['name']:<48} {row['value']:>9.2f} {row['unit']:<2} "
            f"{row['baseline']:>9.2f} {row['unit']:<2} {row['ratio']:>8.2f} "
            f"{row['target']!s:>12}  {'yes' if row['ok'] else 'NO'}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(HERE.parent)}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
