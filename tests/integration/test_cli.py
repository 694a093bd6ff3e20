"""The `evalq` command line against real Redis and real worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.requests import rule_request
from workers import client

pytestmark = pytest.mark.integration


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_submit_prints_one_json_object_per_line_in_input_order(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    requests = [rule_request(), rule_request(), rule_request()]
    lines = [json.dumps(r) for r in requests] + [json.dumps(requests[0])]
    completed = run_evalq(
        "submit",
        str(write_jsonl(tmp_path / "in.jsonl", lines)),
        "--json",
        "--lane",
        "live",
        redis_url=redis_url,
    )
    assert completed.returncode == 0, completed.stderr
    rows = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [row["deduplicated"] for row in rows] == [False, False, False, True]
    assert rows[3]["job_id"] == rows[0]["job_id"]
    assert len({row["job_id"] for row in rows}) == 3
    assert redis_client.llen("dramatiq:evaluations.live") == 3


def test_submit_with_a_bad_line_reports_its_number_and_enqueues_nothing(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    bad = rule_request()
    bad["target"]["uuid"] = "not-a-uuid"
    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps(rule_request()), json.dumps(bad), "{"])
    completed = run_evalq("submit", str(path), "--json", redis_url=redis_url)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert f"{path}:2: target.uuid:" in completed.stderr
    assert f"{path}:3: not valid JSON" in completed.stderr
    assert "nothing was enqueued" in completed.stderr
    assert redis_client.llen("dramatiq:evaluations.batch") == 0
    assert list(redis_client.scan_iter("evalq:*")) == []


def test_submit_wait_then_result_and_status_show_the_finished_job(
    worker_pools: WorkerPools, redis_url: str, tmp_path: Path
) -> None:
    worker_pools.start("evaluations.batch")
    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps(rule_request(output="no match"))])
    submitted = run_evalq("submit", str(path), "--wait", "--json", redis_url=redis_url)
    assert submitted.returncode == 0, submitted.stderr
    row = json.loads(submitted.stdout)
    assert row["state"] == "succeeded"

    shown = run_evalq("result", row["job_id"], "--json", redis_url=redis_url)
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert set(result) == {
        "evaluation_uuid",
        "target_uuid",
        "score",
        "normalized_score",
        "has_passed",
        "reason",
        "metadata",
    }
    assert result["has_passed"] is False

    status = run_evalq("status", "--json", redis_url=redis_url)
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert set(snapshot) == {"queues", "dlq", "workers"}
    assert set(snapshot["queues"]) == {"evaluations.live", "evaluations.batch", "default"}
    assert snapshot["queues"]["evaluations.batch"] == {
        "ready": 0,
        "running": 0,
        "delayed": 0,
        "dead_lettered": 0,
        "throttled": 0,
        "nacked": 0,
    }
    assert {"total", "by_category", "overflow"} <= set(snapshot["dlq"])
    assert [w["queues"] for w in snapshot["workers"]] == [["evaluations.batch"]]


def test_result_of_an_unknown_job_says_so_with_exit_code_4(redis_url: str) -> None:
    completed = run_evalq("result", "no-such-job", "--json", redis_url=redis_url)
    assert completed.returncode == 4
    assert "no job no-such-job" in completed.stderr


def test_result_of_a_job_not_finished_yet_says_so_with_exit_code_3(redis_url: str) -> None:
    handle = client.submit_evaluation(rule_request())  # no worker: it stays queued
    completed = run_evalq("result", handle.id, redis_url=redis_url)
    assert completed.returncode == 3
    assert f"job {handle.id} has no result yet (state: queued)" in completed.stderr


def test_a_client_command_without_any_redis_says_what_to_do(tmp_path: Path) -> None:
    completed = run_evalq("status", "--json", redis_url=None, cwd=tmp_path)
    assert completed.returncode == 2
    assert "set EVALQ_REDIS_URL, or run `evalq up`" in completed.stderr
    assert "Traceback" not in completed.stderr
