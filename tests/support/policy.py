"""Test policy files: the shipped rules with budgets and backoffs small enough for a test."""

from __future__ import annotations

from pathlib import Path

SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "config" / "policies.toml"


def write_test_policy(path: Path, overrides: str) -> Path:
    """Write the shipped policy plus ``overrides`` (TOML tables, e.g. ``[environments.test...]``,
    which the shipped file leaves free) to ``path``."""
    path.write_text(SHIPPED_POLICY.read_text() + "\n" + overrides)
    return path
