"""The job page and its API document show what an operator needs about one job: the payload of
a job that waits or runs (secrets redacted), and the rule, worker and Sentry event of each
attempt; the API document matches the schema /api/openapi.json publishes for it."""

from __future__ import annotations

import jsonschema

from middleware.state.dead_letter_record import latest_event_id
from middleware.state.job_states import attempt_record
from middleware.state.jobs import History
from middleware.state.payload_copy import payload_copy
from tests.support.dashboard_actors import fail_until_fixed, linger
from tests.support.dead_letters import make_record
from tests.unit.dashboard.conftest import VIEWER_TOKEN

VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
SECRET = "sk-live-0123456789abcdefghij"
XSS = '<script>alert("x")</script><img src=x onerror="alert(1)">'


def job_schema(operator) -> dict:
    document = operator.get("/api/openapi.json", headers=VIEWER).json()
    return {"$ref": "#/components/schemas/JobDetail", "components": document["components"]}


def test_a_queued_jobs_payload_is_read_from_its_queue_with_secrets_redacted(operator, services):
    job_id = fail_until_fixed.send(SECRET, "auth").message_id

    document = operator.get(f"/api/jobs/{job_id}", headers=VIEWER).json()

    assert document["state"] == "queued" and document["payload_source"] == "queue"
    assert document["payload"]["actor_name"] == "fail_until_fixed"
    assert document["payload"]["args"] == ["[redacted]", "auth"]
    jsonschema.validate(document, job_schema(operator))
    page = operator.get(f"/jobs/{job_id}").text
    assert 'id="job-payload"' in page and "fail_until_fixed" in page
    assert SECRET not in page and "[redacted]" in page


def test_a_delayed_jobs_payload_is_read_from_its_delay_queue(operator, services):
    job_id = linger.send_with_options(args=(1,), delay=600_000).message_id

    document = operator.get(f"/api/jobs/{job_id}", headers=VIEWER).json()

    assert document["payload_source"] == "delay_queue"
    assert document["payload"]["args"] == [1]
    assert "waiting for its retry on the delay queue" in operator.get(f"/jobs/{job_id}").text


def test_a_running_job_shows_its_running_attempt_worker_and_payload(operator, services):
    message = linger.send(30)
    History(services.client).start_attempt(
        message.message_id, queue="default", actor="linger", running_until=10**13,
        worker="host-a:4242", redis_message_id=message.options["redis_message_id"],
    )  # fmt: skip

    document = operator.get(f"/api/jobs/{message.message_id}", headers=VIEWER).json()

    assert document["state"] == "running" and document["worker"] == "host-a:4242"
    assert document["running_attempt"]["n"] == 1
    assert document["running_attempt"]["worker"] == "host-a:4242"
    assert document["payload"]["args"] == [30]
    jsonschema.validate(document, job_schema(operator))
    page = operator.get(f"/jobs/{message.message_id}").text
    assert '<td id="job-worker">host-a:4242</td>' in page
    assert '<tr data-attempt="1" class="running">' in page and "<td>running</td>" in page


def test_a_job_whose_delivery_is_gone_says_so_instead_of_showing_nothing(operator, services):
    message = linger.send(30)
    services.client.hdel("dramatiq:default.msgs", message.options["redis_message_id"])

    document = operator.get(f"/api/jobs/{message.message_id}", headers=VIEWER).json()

    assert document["payload"] is None and document["payload_source"] is None
    assert "Not found on the queue" in operator.get(f"/jobs/{message.message_id}").text


def test_each_attempt_shows_its_rule_worker_and_sentry_event(operator, services):
    history = History(services.client)
    history.record_enqueued("job-t", queue="default", actor="export_results")
    history.record_attempt("job-t", attempt_record(
        1, started_at=1_000, finished_at=2_000, outcome="retried", category="unknown",
        error_type="KeyError", error_message="'shard'", rule=None, worker="host-a:1",
        sentry_event_id="a" * 32,
    ))  # fmt: skip
    history.record_attempt("job-t", attempt_record(
        2, started_at=3_000, finished_at=4_000, outcome="retried", category="rate_limited",
        error_type="openai.RateLimitError", error_message="slow down", rule="status-429",
        worker="host-b:2",
    ))  # fmt: skip

    document = operator.get("/api/jobs/job-t", headers=VIEWER).json()

    assert [(a["rule"], a["worker"]) for a in document["attempts"]] == [
        (None, "host-a:1"), ("status-429", "host-b:2"),
    ]  # fmt: skip
    # The job's event is the latest one sent; attempt 2 sent none (same job, deduplicated).
    assert document["sentry_event_id"] == "a" * 32
    assert [a["sentry_event_id"] for a in document["attempts"]] == ["a" * 32, None]
    jsonschema.validate(document, job_schema(operator))
    page = operator.get("/jobs/job-t").text
    assert '<td class="attempt-rule">status-429</td>' in page
    assert '<td class="attempt-worker">host-b:2</td>' in page
    assert f'<code id="sentry-event-id">{"a" * 32}</code>' in page


def test_a_dead_letter_carries_its_jobs_sentry_event_to_the_job_page(operator, services):
    record = make_record(sentry_event_id="b" * 32)
    services.dead_letters.add(record)

    document = operator.get(f"/api/jobs/{record.job_id}", headers=VIEWER).json()

    assert document["sentry_event_id"] == "b" * 32
    assert document["payload_source"] == "dead_letter"
    assert document["payload"] == document["dead_letter"]["payload"]
    assert operator.get(f"/api/dlq/{record.id}", headers=VIEWER).json()["sentry_event_id"] == (
        "b" * 32
    )
    assert "b" * 32 in operator.get(f"/dlq/records/{record.id}").text


def test_the_latest_reported_attempt_names_the_event():
    timeline = [
        {"n": 1, "sentry_event_id": "first"},
        {"n": 2},
        {"n": 3, "sentry_event_id": "third"},
        {"n": 4, "sentry_event_id": None},
    ]
    assert latest_event_id(timeline) == "third"
    assert latest_event_id([{"n": 1}]) is None


def test_markup_in_an_attempts_rule_worker_event_or_payload_is_inert(operator, services):
    message = fail_until_fixed.send(XSS, "auth")
    history = History(services.client)
    history.record_attempt(message.message_id, attempt_record(
        1, started_at=1, finished_at=2, outcome="retried", category="unknown",
        error_type="E", error_message="e", rule=XSS, worker=XSS, sentry_event_id=XSS,
    ))  # fmt: skip
    services.client.hset(f"evalq:job:{message.message_id}", "worker", XSS)

    page = operator.get(f"/jobs/{message.message_id}").text

    assert XSS not in page
    assert "<img src=x" not in page and '<script>alert("x")' not in page
    assert page.count("&lt;script&gt;alert(") >= 4  # rule, worker, event, the job's worker
    assert 'id="job-payload"' in page  # the payload is there, as JSON with markup escaped


def test_a_finished_jobs_payload_is_the_copy_its_record_kept(operator, services):
    history = History(services.client)
    history.record_enqueued("job-done", queue="default", actor="linger")
    kept = payload_copy(
        {"actor_name": "linger", "args": [SECRET, XSS], "kwargs": {}}, limit_bytes=4096
    )
    history.record_state("job-done", {"state": "succeeded", "payload": kept})
    history.flush()

    document = operator.get("/api/jobs/job-done", headers=VIEWER).json()

    assert document["payload_source"] == "history"
    assert document["payload"]["args"] == ["[redacted]", XSS]
    jsonschema.validate(document, job_schema(operator))
    page = operator.get("/jobs/job-done").text
    assert "The copy its record kept when it finished" in page and SECRET not in page
    assert XSS not in page and "\\u003cscript\\u003e" in page


def test_a_long_finished_payload_shows_its_excerpt_and_size(operator, services):
    history = History(services.client)
    history.record_enqueued("job-long", queue="default", actor="linger")
    kept = payload_copy({"actor_name": "linger", "args": ["x" * 9000]}, limit_bytes=100)
    history.record_state("job-long", {"state": "dropped", "payload": kept})
    history.flush()

    document = operator.get("/api/jobs/job-long", headers=VIEWER).json()

    assert document["payload_source"] == "history_excerpt"
    assert document["payload"]["size_bytes"] == 9035
    assert len(document["payload"]["excerpt"]) == 100
    jsonschema.validate(document, job_schema(operator))
    assert "The start of its 9035-byte message" in operator.get("/jobs/job-long").text


def test_a_finished_job_whose_record_kept_no_copy_says_so(operator, services):
    history = History(services.client)
    history.record_enqueued("job-bare", queue="default", actor="linger")
    history.record_state("job-bare", {"state": "succeeded"})
    history.flush()

    document = operator.get("/api/jobs/job-bare", headers=VIEWER).json()

    assert document["payload"] is None and document["payload_source"] is None
    assert "EVALQ_HISTORY_PAYLOAD_BYTES=0" in operator.get("/jobs/job-bare").text
