"""The history page searches the job index (middleware.state.job_index) by queue, state, actor,
category and time, newest first, a cursor page at a time."""

from __future__ import annotations

import time

from middleware.state.jobs import History
from tests.support.dead_letters import make_message, make_record
from tests.unit.dashboard.conftest import VIEWER_TOKEN
from tests.unit.dashboard.test_pages import XSS, assert_inert

VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def ids(client, query):
    return [
        job["job_id"] for job in client.get(f"/api/jobs?{query}", headers=VIEWER).json()["jobs"]
    ]


def test_history_finds_jobs_by_state_and_category_newest_first(operator, services):
    history = History(services.client)
    for job_id in ("j-old", "j-new"):
        history.record_enqueued(job_id, queue="default", actor="export_results")
        time.sleep(0.002)
    history.record_state("j-new", {"state": "succeeded", "finished_at": int(time.time() * 1000)})
    history.flush()
    dead = make_record(
        dead_at=int(time.time() * 1000),
        category="content_filtered",
        message=make_message("evaluations.batch"),
        error_message=XSS,
    )
    services.dead_letters.add(dead)

    assert ids(operator, "state=succeeded") == ["j-new"]
    assert ids(operator, "state=queued") == ["j-old"]
    assert ids(operator, "category=content_filtered") == [dead.job_id]
    assert ids(operator, "state=dead_lettered&category=content_filtered") == [dead.job_id]
    assert ids(operator, "queue=default")[:2] == ["j-new", "j-old"]

    page = operator.get("/jobs?state=dead_lettered&category=content_filtered").text
    assert f"/jobs/{dead.job_id}" in page and "j-new" not in page
    assert_inert(page)


def test_history_pages_with_its_cursor(operator, services):
    history = History(services.client)
    for n in range(5):
        history.record_enqueued(f"j-{n}", queue="default", actor="export_results")
        time.sleep(0.002)
    first = operator.get("/api/jobs?limit=2", headers=VIEWER).json()
    assert [j["job_id"] for j in first["jobs"]] == ["j-4", "j-3"]
    second = operator.get(f"/api/jobs?limit=2&cursor={first['next_cursor']}", headers=VIEWER)
    assert [j["job_id"] for j in second.json()["jobs"]] == ["j-2", "j-1"]
    page = operator.get("/jobs?limit=2").text
    assert "next page" in page
    bad = operator.get("/api/jobs?cursor=nonsense", headers=VIEWER)
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]
