"""The job page against real `dramatiq workers`: a job's payload is found wherever its message
is while it waits (its queue, its delay queue, its queue again once the retry came due) or
runs, and in the copy its record keeps once it finished (secrets redacted); each attempt names
its rule and the worker that ran it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

import workers
from config.settings import Settings
from dashboard import Services, create_app
from dashboard.auth import Tokens
from middleware.core.retry_options import RETRY_REQUESTED_RULE
from middleware.state import keys
from middleware.worker_registry import live_workers
from tests.support.dashboard_actors import (
    FIXED_KEY,
    QUEUE,
    fail_until_fixed,
    linger,
    retry_until_fixed,
)
from tests.support.pools import WorkerPools

pytestmark = pytest.mark.integration

ACTORS = ("tests.support.dashboard_actors",)
TOKEN = "job-detail-operator-token-0123"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def dashboard(redis_client: redis.Redis) -> Iterator[TestClient]:
    settings = Settings(dashboard_token=TOKEN, env="test")
    services = Services.from_settings(settings, redis_client, workers.policy)
    with TestClient(create_app(settings, services, tokens=Tokens.from_settings(settings))) as app:
        yield app


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 20.0, every: float = 0.03
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not seen within {timeout}s")


def in_state(dashboard: TestClient, job: str, state: str) -> dict[str, Any]:
    """The job's API document, once the job is in ``state``."""

    def document() -> dict[str, Any] | None:
        found: dict[str, Any] = dashboard.get(f"/api/jobs/{job}", headers=HEADERS).json()
        return found if found["state"] == state else None

    found: dict[str, Any] = wait_for(document, f"job {job} {state}")
    return found


def test_a_retried_jobs_payload_is_found_on_its_delay_queue_then_on_its_queue_again(
    worker_pools: WorkerPools, dashboard: TestClient, redis_client: redis.Redis
) -> None:
    worker_pools.start(QUEUE, modules=ACTORS, threads=1)
    alive = {worker["id"] for worker in live_workers(redis_client)}
    job = retry_until_fixed.send("later", 1500).message_id

    def detail() -> dict[str, Any]:
        document: dict[str, Any] = dashboard.get(f"/api/jobs/{job}", headers=HEADERS).json()
        return document

    waiting = wait_for(lambda: (d := detail())["state"] == "retrying" and d, "the retry")
    # The only worker thread is kept busy past the retry's due time: the retry comes due and
    # waits on its queue under a new delivery id.
    linger.send(4)
    assert waiting["payload_source"] == "delay_queue"
    assert waiting["payload"]["actor_name"] == "retry_until_fixed"
    assert waiting["payload"]["args"] == ["later", 1500]
    (first,) = waiting["attempts"]
    assert first["rule"] == RETRY_REQUESTED_RULE and first["worker"] in alive
    dashboard.post("/login", data={"token": TOKEN, "name": "test"})
    page = dashboard.get(f"/jobs/{job}").text
    assert "waiting for its retry on the delay queue" in page and "retry_until_fixed" in page

    due = wait_for(
        lambda: (d := detail())["payload_source"] == "queue" and d, "the retry back on its queue"
    )
    assert due["state"] == "retrying" and due["payload"]["args"] == ["later", 1500]

    redis_client.sadd(FIXED_KEY, "later")
    done = wait_for(lambda: (d := detail())["state"] == "succeeded" and d, "the job succeeded")
    assert [a["outcome"] for a in done["attempts"]] == ["retried", "succeeded"]
    assert {a["worker"] for a in done["attempts"]} <= alive
    # Its message left Redis with the ack; the record kept a copy.
    assert done["payload_source"] == "history" and done["running_attempt"] is None
    assert done["payload"]["args"] == ["later", 1500]


def test_a_running_jobs_page_shows_its_attempt_its_worker_and_its_payload(
    worker_pools: WorkerPools, dashboard: TestClient, redis_client: redis.Redis
) -> None:
    worker_pools.start(QUEUE, modules=ACTORS, threads=1)
    (worker,) = [w["id"] for w in live_workers(redis_client)]
    job = linger.send(30).message_id

    running = in_state(dashboard, job, "running")

    assert running["running_attempt"]["n"] == 1
    assert running["running_attempt"]["worker"] == worker == running["worker"]
    assert running["payload_source"] == "queue" and running["payload"]["args"] == [30]
    dashboard.post("/login", data={"token": TOKEN, "name": "test"})
    page = dashboard.get(f"/jobs/{job}").text
    assert f'<td id="job-worker">{worker}</td>' in page and 'id="job-payload"' in page
    assert dashboard.post(f"/api/jobs/{job}/abort", headers=HEADERS).status_code == 200


SECRET = "sk-live-0123456789abcdefghij"


def test_a_finished_jobs_record_keeps_its_payload_redacted_and_capped(
    worker_pools: WorkerPools, dashboard: TestClient, redis_client: redis.Redis
) -> None:
    worker_pools.start(QUEUE, modules=ACTORS, threads=1, env={"EVALQ_HISTORY_PAYLOAD_BYTES": "300"})
    redis_client.sadd(FIXED_KEY, SECRET, "x" * 400)
    short = fail_until_fixed.send(SECRET, "auth").message_id
    long = fail_until_fixed.send("x" * 400, "auth").message_id

    kept = in_state(dashboard, short, "succeeded")
    assert kept["payload_source"] == "history"
    assert kept["payload"]["actor_name"] == "fail_until_fixed"
    assert kept["payload"]["args"] == ["[redacted]", "auth"]
    record = redis_client.hgetall(keys.job_key(short))
    assert record and all(SECRET.encode() not in value for value in record.values())
    excerpt = in_state(dashboard, long, "succeeded")
    assert excerpt["payload_source"] == "history_excerpt"
    assert len(excerpt["payload"]["excerpt"].encode()) == 300
    assert excerpt["payload"]["size_bytes"] > 400


def test_a_record_keeps_no_payload_when_told_to_keep_none(
    worker_pools: WorkerPools, dashboard: TestClient, redis_client: redis.Redis
) -> None:
    worker_pools.start(QUEUE, modules=ACTORS, threads=1, env={"EVALQ_HISTORY_PAYLOAD_BYTES": "0"})
    job = linger.send(0).message_id

    done = in_state(dashboard, job, "succeeded")

    assert done["payload"] is None and done["payload_source"] is None
    assert not redis_client.hexists(keys.job_key(job), "payload")
