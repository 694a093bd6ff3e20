"""Fixtures of the reliability scenarios: the simulated provider and a policy of quick backoffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.chaos import QUICK_BACKOFF
from tests.support.policy import write_test_policy


@pytest.fixture
def quick_policy(tmp_path: Path) -> Path:
    """The shipped policy with test-sized backoffs (budgets unchanged)."""
    return write_test_policy(tmp_path / "policy.toml", QUICK_BACKOFF)
