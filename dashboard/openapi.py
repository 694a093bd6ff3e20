"""The OpenAPI 3.1 document of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

_DLQ_FILTER = ["queue", "category", "rule", "since", "until"]
_JOB_FILTER = ["queue", "state", "actor", "category", "since", "until"]
_PAGE = ["limit", "cursor"]

_DESCRIPTIONS = {
    "queue": "Only this queue.",
    "category": "Only this error category.",
    "rule": "Only records whose matched policy rule is this one.",
    "state": "Only jobs in this state (queued, running, retrying, succeeded, dead_lettered, "
    "aborted, dropped).",
    "actor": "Only this actor.",
    "since": "At or after this time (ISO 8601, UTC without an offset, or epoch milliseconds).",
    "until": "At or before this time (same formats as since).",
    "limit": "Page size, 1 to 200 (default 50).",
    "cursor": "next_cursor of the previous page.",
}

#: (method, path, summary, query parameters, whether it changes state)
_OPERATIONS: list[tuple[str, str, str, list[str], bool]] = [
    ("get", "/api/overview", "Queue counts, dead letters, workers and the per-minute outcome "
     "chart (the overview page).", [], False),
    ("get", "/api/running", "Jobs running now: queue, actor, worker, started, elapsed, attempt "
     "n of max.", [], False),
    ("get", "/api/workers", "Worker processes alive (heartbeat), with their current jobs.", [],
     False),
    ("get", "/api/jobs", "Job history over the job index, newest first, cursor-paginated.",
     _JOB_FILTER + _PAGE, False),
    ("get", "/api/jobs/{job_id}", "One job: state, attempt timeline, dead letter, result.", [],
     False),
    ("post", "/api/jobs/{job_id}/abort", "Abort a job (409 when it had finished or is unknown).",
     [], True),
    ("get", "/api/dlq", "Dead letters, newest first, cursor-paginated; `matching` counts the "
     "whole filtered set.", _DLQ_FILTER + _PAGE, False),
    ("get", "/api/dlq/{record_id}", "One dead letter in full.", [], False),
    ("post", "/api/dlq/{record_id}/redrive", "Redrive one dead letter (409 with a reason when "
     "it cannot be).", [], True),
    ("post", "/api/dlq/{record_id}/purge", "Delete one dead letter.", [], True),
    ("get", "/api/dlq/bulk/preview", "How many dead letters a bulk action with this filter "
     "would touch.", _DLQ_FILTER, False),
    ("post", "/api/dlq/bulk", 'Start a bulk redrive or purge. JSON body: {"kind": "redrive" | '
     '"purge", "filter": {queue, category, rule, since, until}, "confirm": <the preview\'s '
     "matching>}. 202 with the action's record; 409 when the count changed.", [], True),
    ("get", "/api/dlq/bulk", "The latest bulk actions: who, when, filter, count, progress.", [],
     False),
    ("get", "/api/dlq/bulk/{action_id}", "One bulk action's record and progress.", [], False),
]  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, params, changes in _OPERATIONS:
        parameters = [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": _DESCRIPTIONS[name]}
            for name in params
        ]  # fmt: skip
        parameters += [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in path.split("/")
            if part.startswith("{")
        ]
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": {"description": "JSON document"},
                          "401": {"description": "no or wrong token"}},
        }  # fmt: skip
        if changes:
            operation["responses"]["403"] = {
                "description": "viewer token, read-only mode, or (session) no CSRF token"
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "evalq dashboard API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
