"""The example application (``examples/reports``): its own actors, queue, options, exceptions
and policy rule on evalq, run by real ``dramatiq workers`` processes."""

from __future__ import annotations

import json
import time

import pytest
import redis

from examples.reports.actors import BUILT_KEY, REPORTS_QUEUE, build_report, rebuild_history
from middleware.state.dead_letters import DeadLetters
from tests.support.cli import REPO_ROOT, run_evalq
from tests.support.pools import WorkerPools
from workers.client import Evalq

pytestmark = pytest.mark.integration

POLICY = str(REPO_ROOT / "examples" / "reports" / "policies.toml")


@pytest.fixture
def reports_pool(worker_pools: WorkerPools) -> WorkerPools:
    worker_pools.start(
        REPORTS_QUEUE, threads=2, modules=("examples.reports.actors",),
        env={"EVALQ_POLICY_FILE": POLICY},
    )  # fmt: skip
    return worker_pools


def wait_state(client: redis.Redis, job_id: str, states: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.hget(f"evalq:job:{job_id}", "state")
        if state is not None and state.decode() in states:
            return str(state.decode())
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}")


def jobs_show(redis_url: str, job_id: str) -> dict[str, object]:
    shown = run_evalq("jobs", "show", job_id, "--json", redis_url=redis_url)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def test_a_rate_limited_report_is_retried_by_policy_and_shows_in_jobs_show(
    reports_pool: WorkerPools, redis_client: redis.Redis, redis_url: str
) -> None:
    redis_client.set("warehouse:busy:acme", 2)  # two 429s, then an answer
    message = build_report.send("acme", "2026-11")
    assert wait_state(redis_client, message.message_id, {"succeeded", "dead_lettered"}) == (
        "succeeded"
    )
    assert redis_client.hget(BUILT_KEY, "acme:2026-11") == b"400"
    document = jobs_show(redis_url, message.message_id)
    assert document["queue"] == REPORTS_QUEUE and document["actor"] == "build_report"
    outcomes = [(a["outcome"], a["category"]) for a in document["attempts"]]  # type: ignore[attr-defined]
    assert [category for _, category in outcomes] == ["rate_limited", "rate_limited", None]


def test_the_applications_own_rule_dead_letters_at_once_and_lists_in_dlq(
    reports_pool: WorkerPools, redis_client: redis.Redis, redis_url: str
) -> None:
    redis_client.sadd("warehouse:closed", "2020-01")
    message = build_report.send("acme", "2020-01")
    assert wait_state(redis_client, message.message_id, {"dead_lettered"}) == "dead_lettered"
    listed = run_evalq("dlq", "list", "--queue", REPORTS_QUEUE, "--json", redis_url=redis_url)
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)["records"]
    assert (record["job_id"], record["category"], record["rule"], record["attempts"]) == (
        message.message_id, "invalid_request", "ledger_closed", 1,
    )  # fmt: skip
    assert record["error_type"].endswith("LedgerClosed")


def test_a_report_that_stays_rate_limited_spends_the_queues_budget_then_dead_letters(
    reports_pool: WorkerPools, redis_client: redis.Redis
) -> None:
    redis_client.set("warehouse:busy:globex", 100)
    message = build_report.send("globex", "2026-11")
    assert wait_state(redis_client, message.message_id, {"dead_lettered"}) == "dead_lettered"
    page = DeadLetters(redis_client, max_records=100, max_age_s=3600).list(queue=REPORTS_QUEUE)
    (record,) = page.records
    assert record.category == "rate_limited"
    assert len(record.attempts) == 4  # max_retries = 3 on the reports queue, from its policy
    assert 100 - int(redis_client.get("warehouse:busy:globex") or 0) == 4


def test_a_running_application_job_is_aborted_by_evalq_abort(
    reports_pool: WorkerPools, redis_client: redis.Redis, redis_url: str
) -> None:
    message = rebuild_history.send("acme", 30.0)
    assert wait_state(redis_client, message.message_id, {"running"}) == "running"
    aborted = run_evalq("abort", message.message_id, "--json", redis_url=redis_url)
    assert aborted.returncode == 0, aborted.stderr
    assert wait_state(redis_client, message.message_id, {"aborted", "dead_lettered"}, 15)
    assert redis_client.hget(BUILT_KEY, "acme:history") is None
    document = jobs_show(redis_url, message.message_id)
    assert document["attempts"][-1]["category"] == "aborted"  # type: ignore[index]


def test_an_application_job_is_deduplicated_through_the_client(
    reports_pool: WorkerPools, redis_client: redis.Redis, redis_url: str
) -> None:
    from config.settings import read_settings

    evalq = Evalq(read_settings(redis_url=redis_url))
    first = evalq.submit_job(rebuild_history, "initech", 1.0, idempotency_key="history/initech")
    again = evalq.submit_job(rebuild_history, "initech", 1.0, idempotency_key="history/initech")
    assert (first.deduplicated, again.deduplicated, again.id) == (False, True, first.id)
    assert wait_state(redis_client, first.id, {"succeeded"}) == "succeeded"
    assert evalq.state(first.id) == "succeeded"
    evalq.close()
