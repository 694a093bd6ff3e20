"""`evalq submit` says what happened: progress, summary, timeouts, lanes, size limits; `export`."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.cli import run_evalq
from tests.support.pools import WorkerPools
from tests.support.requests import rule_request
from workers import client
from workers.evaluations.models import EvaluationResult
from workers.request_size import RequestTooLarge

pytestmark = pytest.mark.integration


def write_jsonl(path: Path, requests: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    return path


def same_evaluation(count: int, *, outputs: list[str]) -> list[dict[str, Any]]:
    """``count`` targets of one evaluation (pattern "hello"), with the given outputs in turn."""
    first = rule_request()
    requests = []
    for i in range(count):
        request = rule_request(output=outputs[i % len(outputs)])
        request["evaluation"] = first["evaluation"]
        requests.append(request)
    return requests


def test_submit_wait_that_times_out_says_so_and_exits_3(redis_url: str, tmp_path: Path) -> None:
    requests = same_evaluation(2, outputs=["hello"])
    requests[0]["evaluation"]["name"] = "[/red]\x1b[2J\u202eeman"  # shown literally, not obeyed
    path = write_jsonl(tmp_path / "in.jsonl", requests)  # no worker: they stay queued
    completed = run_evalq("submit", str(path), "--wait", "--timeout", "1", redis_url=redis_url)
    assert completed.returncode == 3
    assert "evalq: timed out after 1 s: 2 of 2 job(s) not finished" in completed.stderr
    assert "2 job(s): 2 queued\n" in completed.stdout
    assert "2 new job(s) on lane batch (evaluations.batch)\n" in completed.stdout
    evaluation = requests[0]["evaluation"]["uuid"]
    # evaluation, name, passed, failed, no result, mean score
    assert f"{evaluation}  [/red]\\x1b[2J\\u202eeman  0       0       2          -\n" in (
        completed.stdout
    )


def test_submit_wait_reports_progress_then_jobs_by_state_and_scores_per_evaluation(
    worker_pools: WorkerPools, redis_url: str, tmp_path: Path
) -> None:
    worker_pools.start("evaluations.batch", threads=4)
    passing, failing = same_evaluation(6, outputs=["hello", "hello", "bye"]), [rule_request()]
    failing[0]["target"]["actual_output"] = "no greeting"
    path = write_jsonl(tmp_path / "in.jsonl", passing + failing)
    completed = run_evalq("submit", str(path), "--wait", "--timeout", "60", redis_url=redis_url)
    assert completed.returncode == 0, completed.stderr
    progress = [line for line in completed.stderr.splitlines() if line.startswith("evalq: ")]
    assert 1 <= len(progress) <= 10
    assert re.fullmatch(
        r"evalq: 7/7 finished \(100 %\) after [\d.]+ s: succeeded 7, dead-lettered 0, "
        r"running 0, queued 0",
        progress[-1],
    )
    assert "7 job(s): 7 succeeded\n" in completed.stdout
    rows = {line.split()[0]: line.split()[1:] for line in completed.stdout.splitlines()}
    evaluation, other = passing[0]["evaluation"]["uuid"], failing[0]["evaluation"]["uuid"]
    # name, passed, failed, no result, mean normalized score
    assert rows[evaluation] == ["greets", "4", "2", "0", "66.7"]
    assert rows[other] == ["greets", "0", "1", "0", "0.0"]


def test_submit_wait_with_json_keeps_stdout_to_one_object_per_line(
    worker_pools: WorkerPools, redis_url: str, tmp_path: Path
) -> None:
    worker_pools.start("evaluations.batch")
    path = write_jsonl(tmp_path / "in.jsonl", [rule_request()])
    completed = run_evalq("submit", str(path), "--wait", "--json", redis_url=redis_url)
    assert completed.returncode == 0, completed.stderr
    [row] = [json.loads(line) for line in completed.stdout.splitlines()]
    assert set(row) == {"job_id", "deduplicated", "state"}
    assert "1 job(s): 1 succeeded" in completed.stderr


def test_lines_deduplicated_to_jobs_on_another_lane_say_where_those_jobs_are(
    redis_url: str, tmp_path: Path
) -> None:
    requests = [rule_request(), rule_request()]
    earlier = client.submit_many(requests, lane="batch")
    path = write_jsonl(tmp_path / "in.jsonl", [*requests, rule_request()])
    completed = run_evalq("submit", str(path), "--lane", "live", redis_url=redis_url)
    assert completed.returncode == 0, completed.stderr
    assert (
        "1 new job(s) on lane live (evaluations.live); "
        "2 deduplicated to existing jobs (2 on evaluations.batch)"
    ) in completed.stdout
    rows = [line.split() for line in completed.stdout.splitlines()[1:4]]
    assert [(r[1], r[2], r[3]) for r in rows[:2]] == [
        (h.id, "evaluations.batch", "true") for h in earlier
    ]
    assert (rows[2][2], rows[2][3]) == ("evaluations.live", "false")


def test_a_request_over_the_size_limit_is_refused_by_the_cli_and_nothing_is_enqueued(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [rule_request(), rule_request(output="x" * 3000)])
    completed = run_evalq("submit", str(path), redis_url=redis_url, EVALQ_MAX_REQUEST_BYTES="2048")
    assert completed.returncode == 2
    assert re.search(
        rf"{re.escape(str(path))}:2: the request is 3,\d\d\d bytes, over the limit of 2,048 "
        r"bytes \(EVALQ_MAX_REQUEST_BYTES\)",
        completed.stderr,
    )
    assert "1 bad line(s)" in completed.stderr and "nothing was enqueued" in completed.stderr
    assert list(redis_client.scan_iter("*")) == []


def test_a_request_over_the_default_limit_of_1_mib_is_refused_by_the_client(
    redis_url: str, redis_client: redis.Redis
) -> None:
    big = rule_request(output="x" * (1024 * 1024))
    with pytest.raises(RequestTooLarge) as raised:
        client.submit_many([rule_request(), big])
    assert (raised.value.index, raised.value.limit) == (1, 1024 * 1024)
    assert raised.value.size > 1024 * 1024
    assert str(raised.value).startswith(f"request 1: the request is {raised.value.size:,} bytes")
    with pytest.raises(RequestTooLarge):
        client.submit_evaluation(big)
    assert list(redis_client.scan_iter("*")) == []


def test_export_writes_every_stored_result_of_an_evaluation_as_jsonl(
    worker_pools: WorkerPools, redis_url: str, tmp_path: Path
) -> None:
    worker_pools.start("evaluations.batch", threads=4)
    requests = same_evaluation(5, outputs=["hello", "bye"])
    client.wait_all([h.id for h in client.submit_many(requests)], timeout=30)
    evaluation = requests[0]["evaluation"]["uuid"]
    target = tmp_path / "out.jsonl"
    written = run_evalq("export", evaluation, "-o", str(target), redis_url=redis_url)
    assert written.returncode == 0, written.stderr
    assert f"5 result(s) of evaluation {evaluation} written to {target}" in written.stderr
    results = [
        EvaluationResult.model_validate_json(line) for line in target.read_text().splitlines()
    ]
    assert sorted(r.target_uuid for r in results) == sorted(r["target"]["uuid"] for r in requests)
    assert [r.has_passed for r in results].count(True) == 3
    printed = run_evalq("export", evaluation, redis_url=redis_url)
    assert printed.stdout == target.read_text()


def test_export_of_an_evaluation_without_results_exits_4(redis_url: str) -> None:
    missing = str(uuid.uuid4())
    completed = run_evalq("export", missing, redis_url=redis_url)
    assert completed.returncode == 4
    assert f"no stored results for evaluation {missing}" in completed.stderr


def test_dlq_list_with_an_unknown_category_names_the_known_ones(redis_url: str) -> None:
    completed = run_evalq("dlq", "list", "--category", "nosuchcat", redis_url=redis_url)
    assert completed.returncode == 2
    assert completed.stderr.startswith(
        "evalq: --category: unknown category 'nosuchcat'; known: rate_limited, "
        "provider_unavailable, timeout,"
    )


def test_version_is_printed(redis_url: str) -> None:
    completed = run_evalq("--version", redis_url=None)
    assert completed.returncode == 0
    assert re.fullmatch(r"evalq \d+\.\d+\.\d+\S*\n", completed.stdout)
