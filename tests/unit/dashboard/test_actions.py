"""Operators abort jobs and redrive or purge dead letters, one at a time or everything a filter
matches, after a confirmation that shows the count; bulk actions report progress and are
recorded."""

from __future__ import annotations

import re
import time

from middleware.state import keys
from middleware.state.jobs import History
from tests.support.dead_letters import make_message, make_record
from tests.unit.dashboard.conftest import OPERATOR_TOKEN, csrf_of

BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def seed(
    services, count, *, category="rate_limited", queue="evaluations.batch", start=1_700_000_000_000
):
    records = [
        make_record(dead_at=start + i, category=category, queue=queue, message=make_message(queue))
        for i in range(count)
    ]
    services.dead_letters.add_many(records)
    return records


def queued(services, queue="evaluations.batch"):
    return services.client.llen(keys.queue_key(queue))


def wait_finished(client, action_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/api/dlq/bulk/{action_id}", headers=BEARER).json()
        if record["state"] != "running":
            return record
        time.sleep(0.05)
    raise AssertionError("bulk action did not finish")


def test_abort_from_the_page_marks_a_queued_job_aborted_and_shows_its_page(operator, services):
    History(services.client).record_enqueued("job-a", queue="default", actor="export_results")
    response = operator.post("/jobs/job-a/abort", data={"csrf": csrf_of(operator)})
    assert response.status_code == 303 and response.headers["location"].endswith("/jobs/job-a")
    assert services.client.hget(keys.job_key("job-a"), "state") == b"aborted"
    assert services.client.exists(keys.abort_key("job-a"))


def test_abort_through_the_api_says_what_it_did(operator, services):
    History(services.client).record_enqueued("job-b", queue="default", actor="export_results")
    services.client.hset(keys.job_key("job-b"), "state", "running")
    ok = operator.post("/api/jobs/job-b/abort", headers=BEARER)
    assert ok.status_code == 200 and ok.json()["state_before"] == "running"
    assert ok.json()["aborted"] is True
    unknown = operator.post("/api/jobs/nope/abort", headers=BEARER)
    assert unknown.status_code == 409 and unknown.json()["aborted"] is False


def test_redrive_and_purge_of_one_dead_letter(operator, services):
    first, second = seed(services, 2)
    csrf = csrf_of(operator)
    page = operator.post(f"/dlq/records/{first.id}/redrive", data={"csrf": csrf})
    assert "redriven to evaluations.batch" in page.text
    assert queued(services) == 1 and services.dead_letters.get(first.id) is None
    assert (
        "dead letter purged"
        in operator.post(f"/dlq/records/{second.id}/purge", data={"csrf": csrf}).text
    )
    assert services.dead_letters.stats()["total"] == 0
    again = operator.post(f"/api/dlq/{first.id}/redrive", headers=BEARER)
    assert again.status_code == 409 and again.json()["reason"] == "no such record"


def test_a_bulk_redrive_is_confirmed_with_its_count_then_redrives_exactly_the_filtered_set(
    operator, services
):
    seed(services, 7, category="rate_limited")
    seed(services, 3, category="auth", start=1_700_000_100_000)
    link = re.search(
        r'href="(/dlq/bulk/confirm\?kind=redrive[^"]*)"',
        operator.get("/dlq?category=rate_limited").text,
    ).group(1)
    confirm = operator.get(link.replace("&amp;", "&"))
    assert 'id="confirm-count">7<' in confirm.text and "category=rate_limited" in confirm.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', confirm.text))
    assert fields["confirm"] == "7" and fields["category"] == "rate_limited"
    started = operator.post("/dlq/bulk", data=fields)
    assert started.status_code == 303, started.text
    action_id = started.headers["location"].rsplit("/", 1)[1]
    record = wait_finished(operator, action_id)
    assert record["state"] == "finished" and record["changed"] == 7 and record["done"] == 7
    assert record["who"] == "test-operator (operator)"
    assert record["filter"]["category"] == "rate_limited" and record["matching"] == 7
    assert queued(services) == 7
    assert services.dead_letters.stats()["by_category"] == {"auth": 3}
    progress = operator.get(f"/dlq/bulk/{action_id}").text
    assert "7 of 7" in progress and "finished" in progress
    assert action_id in operator.get("/dlq/actions").text


def test_a_bulk_action_whose_set_changed_since_the_confirmation_is_confirmed_again(
    operator, services
):
    seed(services, 2)
    response = operator.post(
        "/dlq/bulk", data={"csrf": csrf_of(operator), "kind": "purge", "confirm": "5"}
    )
    assert response.status_code == 303 and "/dlq/bulk/confirm" in response.headers["location"]
    again = operator.get(response.headers["location"]).text
    assert "it was 5 record(s), it is 2 now" in again
    assert services.dead_letters.stats()["total"] == 2


def test_the_bulk_api_previews_refuses_a_stale_count_and_purges_with_progress(operator, services):
    seed(services, 450, category="timeout")
    seed(services, 5, category="auth", start=1_700_000_500_000)
    preview = operator.get("/api/dlq/bulk/preview?category=timeout", headers=BEARER).json()
    assert preview["matching"] == 450
    body = {"kind": "purge", "filter": {"category": "timeout"}, "confirm": 449}
    stale = operator.post("/api/dlq/bulk", headers=BEARER, json=body)
    assert stale.status_code == 409 and stale.json()["matching"] == 450
    started = operator.post("/api/dlq/bulk", headers=BEARER, json={**body, "confirm": 450})
    assert started.status_code == 202 and started.json()["matching"] == 450
    record = wait_finished(operator, started.json()["id"])
    assert record["changed"] == 450 and record["who"] == "api (operator)"
    assert services.dead_letters.stats()["by_category"] == {"auth": 5}
    listed = operator.get("/api/dlq/bulk", headers=BEARER).json()["actions"]
    assert listed[0]["id"] == record["id"]


def test_a_bulk_action_by_rule_touches_only_records_of_that_rule(operator, services):
    seed(services, 3)
    other = make_record(dead_at=1_700_000_900_000, category="rate_limited", rule="other-rule")
    services.dead_letters.add(other)
    preview = operator.get("/api/dlq/bulk/preview?rule=other-rule", headers=BEARER).json()
    assert preview["matching"] == 1
    started = operator.post(
        "/api/dlq/bulk",
        headers=BEARER,
        json={"kind": "purge", "filter": {"rule": "other-rule"}, "confirm": 1},
    )
    assert wait_finished(operator, started.json()["id"])["changed"] == 1
    assert services.dead_letters.get(other.id) is None
    assert services.dead_letters.stats()["total"] == 3


def test_a_bad_bulk_request_is_refused_with_what_to_send(operator):
    response = operator.post("/api/dlq/bulk", headers=BEARER, json={"kind": "delete"})
    assert response.status_code == 400 and "kind" in response.json()["error"]
