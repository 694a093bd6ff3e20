"""Sentry with real `dramatiq workers`: one event per job and root cause, nothing for known
errors, grouped by root cause across wrappers — counted at a Sentry endpoint on 127.0.0.1."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

import workers
from config.settings import Settings
from dashboard import Services, create_app
from dashboard.auth import Tokens
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from middleware.worker_registry import live_workers
from tests.support.failing_actors import fail_unknown
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, rule_request, target_of
from tests.support.sentry_endpoint import SentryEndpoint
from workers import client
from workers.bootstrap import repoint
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = pytest.mark.integration

API_KEY = "sk-test-sentry-never-sees-this-key"
TEST_OVERRIDES = """
[environments.test.defaults]
min_backoff_ms = 20
max_backoff_ms = 1500
[environments.test.categories.unknown]
max_retries = 3
[environments.test.categories.rate_limited]
max_retries = 1
[environments.test.categories.timeout]
max_retries = 1
"""


@dataclass
class Run:
    endpoint: SentryEndpoint
    events: list[dict[str, Any]]
    jobs: dict[str, list[str]]
    history: History
    redis: redis.Redis
    #: The worker ids (host:pid) the pool's processes advertised while the jobs ran.
    workers: set[str]


def fingerprint(event: dict[str, Any]) -> tuple[str, ...]:
    return tuple(event["fingerprint"])


@pytest.fixture(scope="module")
def run(_redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    redis_client = redis.Redis.from_url(_redis_server)
    redis_client.flushdb()
    repoint(workers.broker, _redis_server)
    tmp = tmp_path_factory.mktemp("sentry")
    policy = write_test_policy(tmp / "policy.toml", TEST_OVERRIDES)
    with SentryEndpoint() as endpoint, SimulatedProvider() as provider:
        env = {
            "SENTRY_DSN": endpoint.dsn,
            "EVALQ_POLICY_FILE": str(policy),
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": API_KEY,
            "EVALQ_PROVIDER_TIMEOUT_S": "1",
        }
        pools = WorkerPools(redis_url=_redis_server, log_dir=tmp / "logs")
        pools.start("default", "evaluations.batch", threads=8, env=env,
                    modules=("workers", "tests.support.failing_actors"))  # fmt: skip
        jobs: dict[str, list[str]] = {"shard": [], "ledger": [], "known": []}
        for wrapper in ("from", "implicit", "bare", "from"):
            tag = str(uuid.uuid4())
            jobs["shard"].append(fail_unknown.send("shard", wrapper, tag).message_id)
        for wrapper in ("from", "implicit"):
            tag = str(uuid.uuid4())
            jobs["ledger"].append(fail_unknown.send("ledger", wrapper, tag).message_id)
        for replies in ([Reply.rate_limited(retry_after_s=0.2)], [Reply.tools_not_supported()],
                        [Reply.hang(5)]):  # fmt: skip
            request = llm_request()
            provider.script(target_of(request), replies)
            jobs["known"].append(client.submit_evaluation(request).id)
        try:
            everything = [job for ids in jobs.values() for job in ids]
            states = client.wait_all(everything, timeout=60)
            assert set(states.values()) == {"dead_lettered"}, states
            endpoint.wait_for(6, timeout=15)
            time.sleep(1.0)  # anything extra would have arrived by now
            alive = {worker["id"] for worker in live_workers(redis_client)}
            yield Run(endpoint, endpoint.events(), jobs, History(redis_client), redis_client,
                      alive)  # fmt: skip
        finally:
            pools.stop()


def test_each_job_with_an_unknown_error_sends_exactly_one_event(run: Run) -> None:
    tagged = Counter(event["tags"]["job_id"] for event in run.events)
    assert tagged == Counter({job: 1 for job in run.jobs["shard"] + run.jobs["ledger"]})


def test_a_job_retried_three_times_still_sends_one_event(run: Run) -> None:
    for job in run.jobs["shard"]:
        document = run.history.show(job)
        assert document is not None
        assert len(document["attempts"]) == 4  # 3 retries of unknown, then the DLQ


def test_the_same_root_cause_in_different_wrappers_shares_one_fingerprint(run: Run) -> None:
    by_job = {event["tags"]["job_id"]: fingerprint(event) for event in run.events}
    shard = {by_job[job] for job in run.jobs["shard"]}
    ledger = {by_job[job] for job in run.jobs["ledger"]}
    assert len(shard) == 1 and len(ledger) == 1
    assert shard != ledger
    [shard_fingerprint] = shard
    assert shard_fingerprint[:3] == (
        "evalq", "fail_unknown", "tests.support.failing_actors.ShardLookupError",
    )  # fmt: skip


def test_known_errors_send_no_events(run: Run) -> None:
    assert not [e for e in run.events if e["tags"]["job_id"] in run.jobs["known"]]


def test_events_carry_tags_level_and_a_job_link(run: Run) -> None:
    for event in run.events:
        assert event["level"] == "error"
        tags = event["tags"]
        assert tags["category"] == "unknown"
        assert tags["queue"] == "default" and tags["actor"] == "fail_unknown"
        assert tags["evalq_env"] == "test"
        assert tags["decision"] == "retry"  # the first failure, the one that is reported
        assert tags["attempt"] == "1"
        assert event["contexts"]["evalq"]["dashboard_path"] == f"/jobs/{tags['job_id']}"


def test_the_event_id_sentry_received_is_the_one_the_attempt_and_dead_letter_keep(
    run: Run,
) -> None:
    received = {event["tags"]["job_id"]: event["event_id"] for event in run.events}
    for job in run.jobs["shard"] + run.jobs["ledger"]:
        document = run.history.show(job)
        assert document is not None
        event_ids = [attempt["sentry_event_id"] for attempt in document["attempts"]]
        # The first failure sent the event; the later ones were the same root cause.
        assert event_ids[0] == received[job] and set(event_ids[1:]) == {None}
        record = DeadLetters(run.redis).get(document["dead_letter_id"])
        assert record is not None and record.sentry_event_id == received[job]


def test_every_attempt_names_its_worker_and_a_classified_one_its_rule(run: Run) -> None:
    assert run.workers
    for job in [job for ids in run.jobs.values() for job in ids]:
        document = run.history.show(job)
        assert document is not None
        assert {attempt["worker"] for attempt in document["attempts"]} <= run.workers
    capability = run.history.show(run.jobs["known"][1])
    assert capability is not None
    assert [a["rule"] for a in capability["attempts"]] == ["capability_not_supported"]
    assert [a["rule"] for a in run.history.show(run.jobs["shard"][0])["attempts"]] == [None] * 4


def test_the_job_page_shows_the_event_id_sentry_received(run: Run) -> None:
    token = "sentry-e2e-operator-token-0123"
    settings = Settings(dashboard_token=token, env="test")
    services = Services.from_settings(settings, run.redis, workers.policy)
    app = create_app(settings, services, tokens=Tokens.from_settings(settings))
    job = run.jobs["ledger"][0]
    (event_id,) = [e["event_id"] for e in run.events if e["tags"]["job_id"] == job]
    with TestClient(app) as dashboard:
        headers = {"Authorization": f"Bearer {token}"}
        document = dashboard.get(f"/api/jobs/{job}", headers=headers).json()
        assert document["sentry_event_id"] == event_id
        assert document["attempts"][0]["worker"] in run.workers
        assert document["payload"]["actor_name"] == "fail_unknown"  # from its dead letter
        dashboard.post("/login", data={"token": token, "name": "test"})
        page = dashboard.get(f"/jobs/{job}").text
    assert f'<code id="sentry-event-id">{event_id}</code>' in page


def test_no_event_carries_the_api_key_or_the_dsn(run: Run) -> None:
    raw = b"".join(run.endpoint.bodies())
    assert API_KEY.encode() not in raw
    assert run.endpoint.dsn.encode() not in raw


@pytest.mark.parametrize("trouble", ["healthy", "refuse", "close", "slow"])
def test_jobs_keep_flowing_while_sentry_is_down_or_slow(
    worker_pools: WorkerPools, tmp_path: Path, trouble: str
) -> None:
    policy = write_test_policy(tmp_path / "policy.toml", TEST_OVERRIDES)
    with SentryEndpoint() as endpoint:
        if trouble == "slow":
            endpoint.slow(30)
        elif trouble == "healthy":
            pass
        else:
            endpoint.down(trouble)  # type: ignore[arg-type]
        worker_pools.start("default", "evaluations.batch", threads=4,
                           env={"SENTRY_DSN": endpoint.dsn, "EVALQ_POLICY_FILE": str(policy)},
                           modules=("workers", "tests.support.failing_actors"))  # fmt: skip
        started = time.monotonic()
        failing = [fail_unknown.send("shard", "from", str(uuid.uuid4())).message_id
                   for _ in range(10)]  # fmt: skip
        passing = [h.id for h in client.submit_many([rule_request() for _ in range(30)])]
        states = client.wait_all(failing + passing, timeout=30)
        elapsed = time.monotonic() - started
        assert [states[j] for j in passing] == ["succeeded"] * 30
        assert {states[j] for j in failing} == {"dead_lettered"}
        # 10 jobs x 4 attempts, each reporting to an endpoint that never answers in time:
        # the reports are queued and dropped, the jobs are not held up.
        assert elapsed < 10, elapsed
