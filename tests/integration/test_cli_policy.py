"""`evalq policy check FILE` and `evalq policy explain`: layers, provenance, the deciding rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_evalq

pytestmark = pytest.mark.integration

MINE = """\
version = 1
[[rules]]
name = "our_gateway_busy"
category = "rate_limited"
message = "gateway busy"

[categories.rate_limited]
max_retries = 3

[actors.build_report.defaults]
max_attempts = 2
"""


def test_check_prints_the_effective_policy_and_where_each_value_came_from(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(MINE)
    checked = run_evalq("policy", "check", str(mine), "--env", "production", "--json",
                        redis_url=None, cwd=tmp_path)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    document = json.loads(checked.stdout)
    assert document["layers"] == [str(mine), "shipped"]
    rows = {row["category"]: row for row in document["categories"]}
    limited = rows["rate_limited"]
    assert (limited["max_retries"], limited["min_backoff_ms"]) == (3, 2000)
    assert limited["origins"]["max_retries"] == f"{mine}:categories.rate_limited.max_retries"
    assert limited["origins"]["min_backoff_ms"] == "shipped"
    assert document["rule_layers"][0] == {
        "name": "our_gateway_busy", "category": "rate_limited", "layer": str(mine),
    }  # fmt: skip
    overrides = {row["key"]: (row["value"], row["origin"]) for row in document["overrides"]}
    assert overrides["actors.build_report.defaults.max_attempts"] == (
        2, f"{mine}:actors.build_report.defaults.max_attempts",
    )  # fmt: skip
    assert overrides['queues."evaluations.live".defaults.max_attempts'] == (4, "shipped")
    human = run_evalq("policy", "check", str(mine), redis_url=None, cwd=tmp_path)
    assert human.returncode == 0 and "shipped" in human.stdout


def test_explain_names_the_layer_and_rule_that_decided(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(MINE)

    def explain(*args: str) -> dict[str, object]:
        answered = run_evalq("policy", "explain", *args, "--json", redis_url=None, cwd=tmp_path,
                             EVALQ_POLICY_FILE=str(mine))  # fmt: skip
        assert answered.returncode == 0, answered.stderr
        return json.loads(answered.stdout)  # type: ignore[no-any-return]

    ours = explain("--type", "RuntimeError", "--message", "gateway busy, try later")
    assert (ours["category"], ours["rule"], ours["layer"]) == (
        "rate_limited", "our_gateway_busy", str(mine),
    )  # fmt: skip
    shipped = explain("--type", "openai.InternalServerError", "--status", "503")
    assert (shipped["category"], shipped["layer"]) == ("provider_unavailable", "shipped")
    judge = explain("--type", "workers.evaluations.llm_judge.JudgeOutputError")
    assert (judge["category"], judge["layer"]) == ("invalid_model_output", "explicit")
