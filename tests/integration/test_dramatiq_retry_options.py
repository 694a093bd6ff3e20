"""Dramatiq's own retry options on evalq actors, with real worker processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis

from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from tests.support import dramatiq_option_actors as actors
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from workers import client

pytestmark = pytest.mark.integration

# Backoffs small enough for a test; the shipped budgets and categories otherwise.
OVERRIDES = """
[environments.test.defaults]
min_backoff_ms = 20
max_backoff_ms = 200
[environments.test.categories.provider_unavailable]
min_backoff_ms = 20
max_backoff_ms = 200
"""


@pytest.fixture
def pool(worker_pools: WorkerPools, tmp_path: Path) -> Iterator[str]:
    policy = write_test_policy(tmp_path / "policy.toml", OVERRIDES)
    yield worker_pools.start(
        "default",
        env={"EVALQ_POLICY_FILE": str(policy)},
        modules=("workers", "tests.support.dramatiq_option_actors"),
    )


def runs(redis_client: redis.Redis, tag: str) -> list[int]:
    return [int(v) for v in redis_client.lrange(f"test:runs:{tag}", 0, -1)]


def finish(job_id: str) -> str:
    return client.wait_all([job_id], timeout=30)[job_id]


def test_an_actor_with_max_retries_1_failing_with_a_retryable_category_runs_twice(
    pool: str, redis_client: redis.Redis
) -> None:
    tag = uuid.uuid4().hex
    job = actors.flaky_with_one_retry.send(tag).message_id
    assert finish(job) == "dead_lettered"
    assert len(runs(redis_client, tag)) == 2  # shipped provider_unavailable would allow 6
    [record] = DeadLetters(redis_client).list().records
    assert (record.category, record.reason) == (
        "provider_unavailable",
        "provider_unavailable: retry budget spent (1 of 1 retries used)",
    )


def test_max_retries_in_the_message_options_wins_over_the_actors(
    pool: str, redis_client: redis.Redis
) -> None:
    none, two = uuid.uuid4().hex, uuid.uuid4().hex
    jobs = [
        actors.flaky_with_three_retries.send_with_options(args=(none,), max_retries=0).message_id,
        actors.flaky_with_three_retries.send_with_options(args=(two,), max_retries=2).message_id,
    ]
    assert set(client.wait_all(jobs, timeout=30).values()) == {"dead_lettered"}
    assert len(runs(redis_client, none)) == 1
    assert len(runs(redis_client, two)) == 3


def test_an_exception_the_actor_throws_runs_once_and_is_dead_lettered_without_an_error_log(
    worker_pools: WorkerPools, pool: str, redis_client: redis.Redis
) -> None:
    tag = uuid.uuid4().hex
    job = actors.throws_key_error.send(tag).message_id
    assert finish(job) == "dead_lettered"
    assert len(runs(redis_client, tag)) == 1  # unknown would have been retried twice
    [record] = DeadLetters(redis_client).list().records
    assert (record.category, record.rule) == ("invalid_request", "actor option throws")
    assert record.error_type.rsplit(".", 1)[-1] == "KeyError"
    log = worker_pools.log(pool)
    assert tag in log  # the decision line names the failure...
    assert "ERROR" not in log  # ...but nothing is logged as an error
    assert "Traceback" not in log


def test_a_retry_when_that_returns_false_dead_letters_at_once(
    pool: str, redis_client: redis.Redis
) -> None:
    tag = uuid.uuid4().hex
    job = actors.declined_by_retry_when.send(tag).message_id
    assert finish(job) == "dead_lettered"
    assert len(runs(redis_client, tag)) == 1
    [record] = DeadLetters(redis_client).list().records
    assert record.category == "provider_unavailable"
    assert "retry_when declined" in record.reason


def test_dramatiq_retry_with_a_delay_waits_at_least_that_long_and_is_counted(
    pool: str, redis_client: redis.Redis
) -> None:
    tag = uuid.uuid4().hex
    job = actors.asks_to_retry.send(tag, 500).message_id
    assert finish(job) == "succeeded"
    first, second = runs(redis_client, tag)
    assert second - first >= 500
    document = History(redis_client).show(job)
    assert document is not None
    outcomes = [(a["outcome"], a.get("category")) for a in document["attempts"]]
    assert outcomes == [("retried", "retry_requested"), ("succeeded", None)]


def test_an_actor_option_evalq_cannot_use_fails_its_declaration() -> None:
    import workers

    def job() -> None:
        """Never runs."""

    with pytest.raises(Exception, match=r"actor bad_max_retries: max_retries must be a whole"):
        dramatiq.actor(job, actor_name="bad_max_retries", broker=workers.broker,
                       max_retries="three")  # fmt: skip
    with pytest.raises(Exception, match=r"throws must be an exception class"):
        dramatiq.actor(job, actor_name="bad_throws", broker=workers.broker, throws=("KeyError",))


def test_policy_explain_for_an_actor_shows_the_budgets_its_options_leave(redis_url: str) -> None:
    from tests.support.cli import run_evalq

    explained = run_evalq(
        "policy", "explain", "--type", "middleware.errors.ProviderUnavailable",
        "--actor", "flaky_with_one_retry", "--module", "tests.support.dramatiq_option_actors",
        "--json", redis_url=redis_url,
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    document = json.loads(explained.stdout)
    assert (document["category"], document["max_retries"], document["attempts_allowed"]) == (
        "provider_unavailable",
        1,
        2,
    )
    assert document["actor_options"] == ["max_retries=1 (caps every retried category)"]

    thrown = run_evalq(
        "policy", "explain", "--type", "builtins.KeyError", "--actor", "throws_key_error",
        "--module", "tests.support.dramatiq_option_actors", "--json", redis_url=redis_url,
    )  # fmt: skip
    document = json.loads(thrown.stdout)
    assert (document["category"], document["action"], document["attempts_allowed"]) == (
        "invalid_request",
        "dead_letter",
        1,
    )


def test_policy_check_lists_the_actors_whose_options_override_the_policy(redis_url: str) -> None:
    from tests.support.cli import run_evalq

    checked = run_evalq(
        "policy", "check", "--module", "tests.support.dramatiq_option_actors", "--json",
        redis_url=redis_url,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    actors = {
        row["actor"]: row["options"] for row in json.loads(checked.stdout)["actors"]["actors"]
    }
    assert actors["flaky_with_one_retry"] == ["max_retries=1 (caps every retried category)"]
    assert actors["declined_by_retry_when"] == ["retry_when=never_retry"]
    assert "asks_to_retry" not in actors  # no option of its own
