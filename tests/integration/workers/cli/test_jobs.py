"""``evalq jobs list``, run as the real console script against a real Redis."""

from __future__ import annotations

import json
import time

import pytest
import redis

from middleware.state.jobs import History
from tests.support.cli import run_evalq

pytestmark = pytest.mark.integration


@pytest.fixture
def jobs(redis_client: redis.Redis) -> list[str]:
    """Three jobs enqueued one after the other: two exports, one batch evaluation (running)."""
    history = History(redis_client)
    for job_id, queue, actor in (
        ("job-export-1", "default", "export_results"),
        ("job-export-2", "default", "export_results"),
        ("job-eval", "evaluations.batch", "run_batch_evaluation"),
    ):
        history.record_enqueued(job_id, queue=queue, actor=actor)
        time.sleep(0.002)  # one millisecond each, so that "newest first" has one answer
    history.start_attempt(
        "job-eval", queue="evaluations.batch", actor="run_batch_evaluation", running_until=1
    )
    return ["job-eval", "job-export-2", "job-export-1"]


def test_jobs_list_json_pages_newest_first_with_a_cursor(redis_url: str, jobs: list[str]) -> None:
    first = run_evalq("jobs", "list", "--limit", "2", "--json", redis_url=redis_url)
    assert first.returncode == 0, first.stderr
    page = json.loads(first.stdout)
    assert [job["job_id"] for job in page["jobs"]] == jobs[:2]
    assert page["jobs"][0]["state"] == "running" and page["jobs"][0]["attempts"] == 1
    assert set(page["jobs"][0]) == {
        "job_id", "queue", "actor", "state", "category", "attempts", "enqueued_at",
        "finished_at", "error_type", "error_message", "dead_letter_id",
    }  # fmt: skip

    rest = run_evalq(
        "jobs", "list", "--limit", "2", "--cursor", page["next_cursor"], "--json",
        redis_url=redis_url,
    )  # fmt: skip
    last = json.loads(rest.stdout)
    assert [job["job_id"] for job in last["jobs"]] == jobs[2:]
    assert last["next_cursor"] is None


def test_jobs_list_filters_by_queue_state_and_actor(redis_url: str, jobs: list[str]) -> None:
    def listed(*filters: str) -> list[str]:
        done = run_evalq("jobs", "list", *filters, "--json", redis_url=redis_url)
        assert done.returncode == 0, done.stderr
        return [job["job_id"] for job in json.loads(done.stdout)["jobs"]]

    assert listed("--queue", "default") == jobs[1:]
    assert listed("--state", "running") == jobs[:1]
    assert listed("--actor", "export_results", "--state", "queued") == jobs[1:]
    assert listed("--category", "timeout") == []


def test_jobs_list_prints_a_table_and_where_the_next_page_is(
    redis_url: str, jobs: list[str]
) -> None:
    done = run_evalq("jobs", "list", "--limit", "1", redis_url=redis_url, COLUMNS="200")
    assert done.returncode == 0, done.stderr
    assert "job-eval" in done.stdout and "running" in done.stdout
    assert "more: evalq jobs list --cursor " in done.stdout


def test_jobs_list_refuses_an_unknown_state_a_bad_time_and_a_bad_cursor(redis_url: str) -> None:
    for args, says in (
        (("--state", "finished"), "--state must be one of queued, running"),
        (("--since", "yesterday"), "--since: 'yesterday' is neither an ISO time"),
        (("--cursor", "nonsense"), "invalid job cursor"),
    ):
        done = run_evalq("jobs", "list", *args, redis_url=redis_url)
        assert done.returncode == 2, done.stdout
        assert says in done.stderr
