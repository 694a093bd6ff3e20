"""Every page shows what an operator needs, live parts included, and nothing that came from a
job or a provider can run as markup."""

from __future__ import annotations

import time
from types import SimpleNamespace

import dramatiq
import pytest

from dashboard import queries
from middleware.state.job_states import attempt_record
from middleware.state.jobs import History
from middleware.worker_registry import WorkerRegistry
from tests.support.dead_letters import make_message, make_record

XSS = '<script>alert("x")</script><img src=x onerror="alert(1)">'


def dead_letter_with_xss(services):
    record = make_record(
        error_message=f"provider said: {XSS}",
        category="invalid_request",
        dead_at=int(time.time() * 1000),
    )
    attempt = {**record.attempts[0], "error_message": XSS, "rule": XSS, "worker": XSS,
               "sentry_event_id": XSS}  # fmt: skip
    record = record.model_copy(update={"attempts": [attempt], "sentry_event_id": XSS})
    services.dead_letters.add(record)
    return record


def assert_inert(html: str) -> None:
    assert XSS not in html
    assert "<img src=x" not in html and '<script>alert("x")' not in html
    assert "&lt;script&gt;alert(" in html


def test_an_xss_payload_in_a_provider_error_is_inert_on_every_page_that_shows_it(
    operator, services
):
    record = dead_letter_with_xss(services)
    History(services.client).record_attempt(record.job_id, record.attempts[0])
    for path in (
        "/dlq",
        f"/dlq/records/{record.id}",
        f"/jobs/{record.job_id}",
        "/dlq?category=invalid_request",
    ):
        page = operator.get(path)
        assert page.status_code == 200, path
        assert_inert(page.text)
    # The API returns it as data, with a JSON content type a browser does not render.
    api = operator.get(f"/api/dlq/{record.id}")
    assert api.headers["content-type"] == "application/json"
    assert XSS in api.json()["error_message"]


def test_the_overview_shows_queues_dead_letters_workers_and_the_outcome_chart(operator, services):
    services.dead_letters.add(make_record(category="auth"))
    history = History(services.client)
    now = int(time.time() * 1000)
    for _ in range(3):
        history.count_outcome("succeeded", None, at_ms=now)
    history.count_outcome("failed", "rate_limited", at_ms=now)
    page = operator.get("/").text
    assert "evaluations.live" in page and "evaluations.batch" in page
    assert "succeeded: 3" in page and "failed: rate_limited: 1" in page
    assert "<polyline" in page
    assert ">auth</a> 1" in page
    assert 'hx-trigger="every 2s"' in page
    partial = operator.get("/", headers={"HX-Request": "true"}).text
    assert "<html" not in partial and "succeeded: 3" in partial


def test_the_outcome_series_covers_the_last_hour_minute_by_minute(services):
    history = History(services.client)
    now = services.clock()
    history.count_outcome("failed", "timeout", at_ms=now - 10 * 60_000)
    history.count_outcome("failed", "timeout", at_ms=now - 90 * 60_000)  # outside the hour
    series = queries.outcome_series(services)
    assert len(series["minutes"]) == 60
    assert sum(series["failed_by_category"]["timeout"]) == 1
    assert series["failed_by_category"]["timeout"][-11] == 1


@pytest.fixture
def registry(services):
    """A worker registry heartbeating into the test Redis, as a worker process's does."""
    registry = WorkerRegistry(interval_s=5, min_interval_s=0.05)
    broker = SimpleNamespace(client=services.client, get_declared_queues=lambda: {"default"})
    worker = SimpleNamespace(consumer_whitelist={"evaluations.live"}, worker_threads=4)
    registry.after_worker_boot(broker, worker)
    yield registry
    registry.before_worker_shutdown(broker, worker)


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_running_jobs_come_from_worker_heartbeats_with_attempt_n_of_max(
    operator, services, registry
):
    message = dramatiq.Message(
        queue_name="evaluations.live",
        actor_name="run_live_evaluation",
        args=(),
        kwargs={},
        options={},
    )
    services.client.set(f"evalq:attempt-count:{message.message_id}", 2)
    registry.before_process_message(None, message)
    wait_for(lambda: queries.running_jobs(services))
    (row,) = queries.running_jobs(services)
    assert row["job_id"] == message.message_id and row["attempt"] == 2
    assert row["max_attempts"] == 4  # the shipped policy's cap for evaluations.live
    assert row["worker"] == registry.worker_id
    page = operator.get("/running").text
    assert message.message_id in page and "2 of 4" in page and ">Abort<" in page
    registry.after_process_message(None, message)
    wait_for(lambda: not queries.running_jobs(services))
    assert "nothing is running" in operator.get("/running", headers={"HX-Request": "1"}).text


def test_the_job_page_shows_the_timeline_the_dead_letter_and_redrive(operator, services):
    record = make_record(category="model_capability")
    services.dead_letters.add(record)
    History(services.client).record_attempt(record.job_id, record.attempts[0])
    page = operator.get(f"/jobs/{record.job_id}").text
    assert "dead_lettered" in page and "tools-not-supported" in page
    assert "openai.BadRequestError" in page and "worker-1" in page
    assert f"/dlq/records/{record.id}/redrive" in page
    assert "hx-trigger" not in page  # a finished job is not polled


def test_the_job_page_of_a_succeeded_job_shows_its_result(operator, services):
    from workers.evaluations.models import EvaluationResult

    history = History(services.client)
    history.record_enqueued("job-ok", queue="evaluations.batch", actor="run_batch_evaluation")
    services.client.hset(
        "evalq:job:job-ok",
        mapping={"evaluation_uuid": "e-1", "target_uuid": "t-1", "state": "succeeded"},
    )
    history.record_attempt(
        "job-ok", attempt_record(1, started_at=1, finished_at=2, outcome="succeeded")
    )
    services.results.put(
        EvaluationResult(
            evaluation_uuid="e-1",
            target_uuid="t-1",
            score=1.0,
            normalized_score=100,
            has_passed=True,
            reason="exact",
            metadata={},
        )
    )
    page = operator.get("/jobs/job-ok").text
    assert "Result" in page and '"has_passed": true' in page


def test_a_running_job_page_polls_until_it_finishes(operator, services):
    History(services.client).record_enqueued("job-q", queue="default", actor="export_results")
    page = operator.get("/jobs/job-q").text
    assert 'hx-trigger="every 1s"' in page and ">Abort<" in page
    services.client.hset("evalq:job:job-q", "state", "succeeded")
    assert operator.get("/jobs/job-q", headers={"HX-Request": "1"}).status_code == 286


def test_an_unknown_job_or_dead_letter_is_a_404_page(operator):
    assert operator.get("/jobs/nope").status_code == 404
    assert operator.get("/dlq/records/nope").status_code == 404
    assert operator.get("/api/jobs/nope").status_code == 404


def test_the_job_id_box_goes_to_the_job(operator):
    response = operator.get("/jobs?id=abc-123")
    assert response.status_code == 303 and response.headers["location"].endswith("/jobs/abc-123")


def test_the_dead_letter_page_filters_by_queue_category_rule_and_time(operator, services):
    old = make_record(dead_at=1_700_000_000_000, category="auth")
    new = make_record(
        dead_at=1_700_000_100_000,
        category="auth",
        queue="evaluations.live",
        message=make_message("evaluations.live"),
    )
    other_rule = make_record(dead_at=1_700_000_200_000, category="auth", rule="other-rule")
    for record in (old, new, other_rule):
        services.dead_letters.add(record)
    api = lambda query: [r["id"] for r in operator.get(f"/api/dlq?{query}").json()["records"]]  # noqa: E731
    assert api("category=auth") == [other_rule.id, new.id, old.id]
    assert api("queue=evaluations.live") == [new.id]
    assert api("category=auth&rule=tools-not-supported") == [new.id, old.id]
    assert api("since=1700000050000&until=1700000150000") == [new.id]
    assert api("until=2023-11-14T22:14:00") == [old.id]
    assert operator.get("/api/dlq?category=auth").json()["matching"] == 3
    bad = operator.get("/api/dlq?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()["error"]
    page = operator.get("/dlq?category=auth&limit=1").text
    assert "3</span> record(s) match" in page and "next page" in page


def test_the_timeline_shows_how_long_each_retry_waited(operator, services):
    history = History(services.client)
    history.record_enqueued("job-r", queue="default", actor="export_results")
    history.record_attempt(
        "job-r",
        attempt_record(
            1, started_at=1_000, finished_at=2_000, outcome="retried", category="rate_limited"
        ),
    )
    history.record_attempt(
        "job-r", attempt_record(2, started_at=32_000, finished_at=33_000, outcome="succeeded")
    )
    attempts = queries.job_detail(services, "job-r")["attempts"]
    assert [a["waited_ms"] for a in attempts] == [30_000, None]
    assert "<td>30.0s</td>" in operator.get("/jobs/job-r").text
