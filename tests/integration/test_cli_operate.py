"""Operator commands of `evalq` (jobs, dead letters, policy): real Redis, the real script."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from config.policy import CATEGORIES
from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from tests.support.cli import run_evalq
from tests.support.dead_letters import BATCH, LIVE, make_message, make_record
from tests.support.pools import WorkerPools
from tests.support.requests import rule_request
from workers import client

pytestmark = pytest.mark.integration

LIST_FIELDS = {"id", "job_id", "queue", "actor", "category", "rule", "error_type",
               "error_message", "attempts", "dead_at"}  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def dead_letters(redis_client: redis.Redis) -> DeadLetters:
    return DeadLetters(redis_client)


def fill(store: DeadLetters, count: int, *, category: str = "model_capability",
         queue: str = BATCH) -> list[str]:  # fmt: skip
    ids = []
    for i in range(count):
        record = make_record(dead_at=now_ms() - 1000 + i, category=category, queue=queue,
                             message=make_message(queue))  # fmt: skip
        store.add(record)
        ids.append(record.id)
    return ids


def evalq_json(*args: str, redis_url: str) -> dict:
    completed = run_evalq(*args, "--json", redis_url=redis_url)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_dlq_list_pages_newest_first_with_a_cursor_and_filters(
    redis_url: str, dead_letters: DeadLetters
) -> None:
    capability = fill(dead_letters, 3)
    rate_limited = fill(dead_letters, 2, category="rate_limited", queue=LIVE)
    first = evalq_json("dlq", "list", "--limit", "3", redis_url=redis_url)
    assert set(first) == {"records", "next_cursor"}
    assert all(set(r) == LIST_FIELDS for r in first["records"])
    second = evalq_json("dlq", "list", "--limit", "3", "--cursor", first["next_cursor"],
                        redis_url=redis_url)  # fmt: skip
    assert second["next_cursor"] is None
    listed = [r["id"] for r in first["records"] + second["records"]]
    assert listed == sorted(capability + rate_limited, reverse=True)
    only = evalq_json("dlq", "list", "--category", "rate_limited", redis_url=redis_url)
    assert [r["id"] for r in only["records"]] == sorted(rate_limited, reverse=True)
    on_live = evalq_json("dlq", "list", "--queue", LIVE, redis_url=redis_url)
    assert {r["queue"] for r in on_live["records"]} == {LIVE}


def test_dlq_list_with_a_bad_cursor_says_so(redis_url: str) -> None:
    completed = run_evalq("dlq", "list", "--cursor", "garbage!", redis_url=redis_url)
    assert completed.returncode == 2
    assert "cursor" in completed.stderr


def test_dlq_show_prints_the_whole_record(redis_url: str, dead_letters: DeadLetters) -> None:
    [record_id] = fill(dead_letters, 1)
    record = evalq_json("dlq", "show", record_id, redis_url=redis_url)
    assert record["id"] == record_id
    assert {"traceback", "chain_types", "payload", "attempts", "worker_host"} <= set(record)


def test_dlq_redrive_dry_run_changes_nothing_and_redrive_moves_the_job(
    redis_url: str, dead_letters: DeadLetters, redis_client: redis.Redis
) -> None:
    [record_id] = fill(dead_letters, 1)
    dry = evalq_json("dlq", "redrive", record_id, "--dry-run", redis_url=redis_url)
    assert dry["dry_run"] is True
    assert dead_letters.get(record_id) is not None
    assert redis_client.llen(keys.queue_key(BATCH)) == 0

    done = evalq_json("dlq", "redrive", record_id, redis_url=redis_url)
    assert [r["redriven"] for r in done["results"]] == [True]
    assert dead_letters.get(record_id) is None
    assert redis_client.llen(keys.queue_key(BATCH)) == 1


def test_dlq_redrive_all_of_a_category_to_another_queue(
    redis_url: str, dead_letters: DeadLetters, redis_client: redis.Redis
) -> None:
    fill(dead_letters, 2, category="rate_limited")
    [kept] = fill(dead_letters, 1)
    done = evalq_json("dlq", "redrive", "--all", "--category", "rate_limited",
                      "--to-queue", LIVE, redis_url=redis_url)  # fmt: skip
    assert len(done["results"]) == 2
    assert redis_client.llen(keys.queue_key(LIVE)) == 2
    assert [r.id for r in dead_letters.list().records] == [kept]


def test_dlq_redrive_needs_ids_or_all(redis_url: str) -> None:
    completed = run_evalq("dlq", "redrive", redis_url=redis_url)
    assert completed.returncode == 2
    assert "give record ids, or --all" in completed.stderr


def test_dlq_purge_by_category(redis_url: str, dead_letters: DeadLetters) -> None:
    fill(dead_letters, 2, category="auth")
    [kept] = fill(dead_letters, 1)
    assert evalq_json("dlq", "purge", "--all", "--category", "auth", "--dry-run",
                      redis_url=redis_url)["purged"] == 2  # fmt: skip
    assert dead_letters.stats()["total"] == 3
    assert evalq_json("dlq", "purge", "--all", "--category", "auth",
                      redis_url=redis_url)["purged"] == 2  # fmt: skip
    assert [r.id for r in dead_letters.list().records] == [kept]


def test_status_counts_dead_letters_by_category_and_queue(
    redis_url: str, dead_letters: DeadLetters
) -> None:
    fill(dead_letters, 2, category="auth")
    fill(dead_letters, 1, category="rate_limited", queue=LIVE)
    snapshot = evalq_json("status", redis_url=redis_url)
    assert snapshot["dlq"]["total"] == 3
    assert snapshot["dlq"]["by_category"] == {"auth": 2, "rate_limited": 1}
    assert snapshot["dlq"]["overflow"] == 0
    assert snapshot["queues"][BATCH]["dead_lettered"] == 2
    assert snapshot["queues"][LIVE]["dead_lettered"] == 1


def test_status_shows_retention_overflow(redis_url: str, redis_client: redis.Redis) -> None:
    small = DeadLetters(redis_client, max_records=2)
    fill(small, 5)
    snapshot = evalq_json("status", redis_url=redis_url)
    assert snapshot["dlq"]["total"] == 2
    assert snapshot["dlq"]["overflow"] == 3


def test_jobs_show_gives_the_state_and_attempt_timeline(
    worker_pools: WorkerPools, redis_url: str
) -> None:
    worker_pools.start("evaluations.live")
    handle = client.submit_evaluation(rule_request(), lane="live")
    handle.result(timeout=20)
    time.sleep(0.3)  # the timeline is flushed in the background
    document = evalq_json("jobs", "show", handle.id, redis_url=redis_url)
    assert set(document) >= {"job_id", "queue", "actor", "state", "attempts"}
    assert (document["state"], document["queue"]) == ("succeeded", "evaluations.live")
    [attempt] = document["attempts"]
    # The contract's fields, and those added since (never removed or renamed).
    assert set(attempt) == {"n", "started_at", "finished_at", "outcome", "category",
                            "error_type", "error_message", "rule", "worker",
                            "sentry_event_id"}  # fmt: skip
    assert (attempt["n"], attempt["outcome"]) == (1, "succeeded")


def test_jobs_show_of_an_unknown_job_says_so(redis_url: str) -> None:
    completed = run_evalq("jobs", "show", "nope", redis_url=redis_url)
    assert completed.returncode == 4
    assert "no job nope" in completed.stderr


def test_policy_check_accepts_the_shipped_file(redis_url: str) -> None:
    document = evalq_json("policy", "check", redis_url=redis_url)
    assert document["ok"] is True
    assert len(document["categories"]) == len(CATEGORIES)


def test_policy_check_names_the_file_and_key_of_a_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text('version = 1\n[categories.rate_limitd]\naction = "retry"\n'
                   '[[rules]]\ncategory = "auth"\nmessage = "(unclosed"\n')  # fmt: skip
    completed = run_evalq("policy", "check", str(bad), redis_url=None)
    assert completed.returncode == 2
    assert f"{bad}: categories.rate_limitd" in completed.stderr
    assert f"{bad}: rules[0].message" in completed.stderr


def test_a_bad_policy_file_stops_a_worker_at_start(tmp_path: Path, redis_url: str) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text("version = 2\n")
    completed = run_evalq("status", redis_url=redis_url, EVALQ_POLICY_FILE=str(bad))
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"evalq: invalid policy file: {bad}: version")


@pytest.mark.parametrize(
    ("args", "category", "allowed"),
    [
        (["--type", "openai.BadRequestError", "--status", "400",
          "--message", "tools is not supported in this model"], "model_capability", 1),
        (["--type", "openai.RateLimitError", "--status", "429"], "rate_limited", None),
        (["--type", "openai.RateLimitError", "--status", "429", "--code", "insufficient_quota"],
         "quota_exhausted", 1),
        (["--type", "RuntimeError", "--message", "boom"], "unknown", None),
    ],
)  # fmt: skip
def test_policy_explain_names_category_rule_and_budget(
    redis_url: str, args: list[str], category: str, allowed: int | None
) -> None:
    document = evalq_json("policy", "explain", *args, redis_url=redis_url)
    assert document["category"] == category
    assert {"rule", "action", "max_retries", "attempts_allowed", "min_backoff_ms"} <= set(document)
    if allowed is not None:
        assert document["attempts_allowed"] == allowed


def test_dlq_list_filters_by_time(redis_url: str, dead_letters: DeadLetters) -> None:
    base = now_ms() - 3_600_000
    ids = []
    for minutes in (0, 10, 20, 30):
        record = make_record(dead_at=base + minutes * 60_000)
        dead_letters.add(record)
        ids.append(record.id)
    window = evalq_json("dlq", "list", "--since", str(base + 5 * 60_000),
                        "--until", str(base + 20 * 60_000), redis_url=redis_url)  # fmt: skip
    assert [r["id"] for r in window["records"]] == [ids[2], ids[1]]
    iso = datetime.fromtimestamp((base + 25 * 60_000) / 1000, tz=UTC).isoformat()
    recent = evalq_json("dlq", "list", "--since", iso, redis_url=redis_url)
    assert [r["id"] for r in recent["records"]] == [ids[3]]


def test_dlq_list_with_a_bad_time_names_the_option(redis_url: str) -> None:
    completed = run_evalq("dlq", "list", "--since", "yesterday", redis_url=redis_url)
    assert completed.returncode == 2
    assert "--since: 'yesterday' is neither an ISO time nor epoch milliseconds" in completed.stderr


def test_status_shows_nacked_messages_and_custom_queues_with_messages(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.zadd(keys.nacked_key(BATCH), {"m-1": now_ms()})
    redis_client.zadd(keys.nacked_key(keys.delay_queue_name("reports")), {"m-2": now_ms()})
    redis_client.hset(keys.queue_messages_key("reports"), "m-3", "{}")
    redis_client.rpush(keys.queue_key("reports"), "m-3")
    snapshot = evalq_json("status", redis_url=redis_url)
    assert list(snapshot["queues"]) == ["evaluations.live", BATCH, "default", "reports"]
    assert (snapshot["queues"][BATCH]["nacked"], snapshot["queues"]["reports"]["nacked"]) == (1, 1)
    assert snapshot["queues"]["reports"]["ready"] == 1

    shown = run_evalq("status", redis_url=redis_url)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines() if line}
    assert rows["queue"] == ["ready", "delayed", "running", "dead_lettered", "throttled", "nacked"]
    assert rows[BATCH] == ["0", "0", "0", "0", "0", "1"]
    assert rows["reports"] == ["1", "0", "0", "0", "0", "1"]
    assert "2 message(s) in Dramatiq's dead sets (nacked)" in shown.stdout
