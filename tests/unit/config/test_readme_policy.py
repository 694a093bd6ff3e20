"""The README's policy snippet and category table say what the shipped policy file does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.policy import CATEGORIES, load_policy
from config.settings import DEFAULT_POLICY_FILE

README = Path(__file__).resolve().parents[3] / "README.md"

#: The columns of the table's attempts cell: (actor, queue) of each lane.
LANES = (
    ("run_live_evaluation", "evaluations.live"),
    ("run_batch_evaluation", "evaluations.batch"),
    ("export_results", "default"),
)


def category_rows() -> dict[str, list[int]]:
    """category -> attempts per lane, from the README's category table."""
    text = README.read_text()
    table = text[text.index("| category | typical cause | shipped policy | attempts") :]
    rows: dict[str, list[int]] = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        attempts = [int(n) for n in cells[-1].split("/")]
        for category in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[category] = attempts
    return rows


def test_the_category_table_names_every_category_once() -> None:
    assert sorted(category_rows()) == sorted(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_the_category_table_gives_the_attempts_the_shipped_file_allows_by_default(
    category: str,
) -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    allowed = [
        policy.resolve(category, actor=actor, queue=queue, env="development").attempts_allowed
        for actor, queue in LANES
    ]
    assert category_rows()[category] == allowed


def test_the_policy_snippet_is_a_valid_policy_file_as_written_and_layers_over_the_shipped_one(
    tmp_path: Path,
) -> None:
    text = README.read_text()
    section = text[text.index("### The policy file") :]
    snippet = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert snippet is not None
    path = tmp_path / "policy.toml"
    path.write_text(snippet.group(1))
    policy = load_policy(path)
    resolved = policy.resolve(
        "rate_limited", actor="run_batch_evaluation", queue="evaluations.batch", env="production"
    )
    # The snippet's tweak, over the shipped table's other fields and the shipped rules.
    assert (resolved.max_retries, resolved.min_backoff_ms) == (3, 2000)
    assert len(policy.rules) == len(load_policy(DEFAULT_POLICY_FILE).rules)
