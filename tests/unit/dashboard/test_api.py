"""The JSON API is documented route by route, /metrics speaks Prometheus, and history search
says plainly when this build has no job index to search."""

from __future__ import annotations

import time

from starlette.routing import Route

from middleware.state.jobs import History
from tests.support.dead_letters import make_record
from tests.unit.dashboard.conftest import METRICS_TOKEN, VIEWER_TOKEN

VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def test_the_openapi_document_describes_every_api_route_and_method(operator):
    document = operator.get("/api/openapi.json", headers=VIEWER).json()
    assert document["openapi"].startswith("3.")
    served = {
        (method.lower(), route.path)
        for route in operator.app.routes
        if isinstance(route, Route)
        and route.path.startswith("/api/")
        and route.path != "/api/openapi.json"
        for method in route.methods - {"HEAD"}
    }
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == documented


def test_the_overview_api_has_the_evalq_status_shape_and_the_chart(operator, services):
    services.dead_letters.add(make_record(category="auth"))
    document = operator.get("/api/overview", headers=VIEWER).json()
    assert set(document["queues"]["default"]) >= {"ready", "delayed", "running", "dead_lettered"}
    assert document["dlq"]["by_category"] == {"auth": 1}
    assert len(document["chart"]["minutes"]) == 60
    assert operator.get("/api/running", headers=VIEWER).json() == {"jobs": []}
    assert operator.get("/api/workers", headers=VIEWER).json() == {"workers": []}


def test_the_job_api_returns_the_jobs_show_document_with_its_dead_letter(operator, services):
    record = make_record()
    services.dead_letters.add(record)
    document = operator.get(f"/api/jobs/{record.job_id}", headers=VIEWER).json()
    assert document["state"] == "dead_lettered" and document["can_redrive"] is True
    assert document["dead_letter"]["rule"] == "tools-not-supported"


def test_metrics_are_prometheus_text_with_depths_outcomes_dead_letters_and_workers(
    make_client, services
):
    services.dead_letters.add(make_record(category="auth"))
    history = History(services.client)
    history.count_outcome("failed", "rate_limited", at_ms=int(time.time() * 1000))
    history.count_outcome("succeeded", None, at_ms=int(time.time() * 1000))
    services.client.rpush("dramatiq:default", "m1", "m2")
    response = make_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'evalq_queue_messages{kind="ready",queue="default"} 2.0' in text
    assert 'evalq_attempts_total{category="rate_limited",outcome="failed"} 1.0' in text
    assert 'evalq_attempts_total{category="",outcome="succeeded"} 1.0' in text
    assert 'evalq_dlq_records{category="auth"} 1.0' in text
    assert 'evalq_dlq_evicted_total{reason="overflow"} 0.0' in text
    assert "evalq_workers_alive 0.0" in text


def test_route_names_are_unique_so_links_never_point_at_the_api_by_mistake(operator):
    names = [route.name for route in operator.app.routes if isinstance(route, Route)]
    assert len(names) == len(set(names))
