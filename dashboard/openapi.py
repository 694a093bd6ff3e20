"""The OpenAPI 3.1 document of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

from middleware.state.dead_letter_record import DeadLetterRecord

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


_TEXT = {"type": ["string", "null"]}
_MS = {"type": ["integer", "null"], "description": "ms since the epoch"}

#: Schemas of the documents the API returns, by name (``components.schemas``).
_SCHEMAS: dict[str, dict[str, Any]] = {
    "Attempt": {
        "type": "object",
        "description": "One finished attempt of a job's timeline. rule, worker and "
        "sentry_event_id are null where unknown (a crashed attempt, or one recorded before "
        "evalq kept them).",
        "required": [
            "n",
            "started_at",
            "finished_at",
            "outcome",
            "category",
            "error_type",
            "error_message",
        ],
        "properties": {
            "n": {"type": "integer"},
            "started_at": _MS,
            "finished_at": _MS,
            "outcome": _TEXT,
            "category": _TEXT,
            "error_type": _TEXT,
            "error_message": _TEXT,
            "rule": {**_TEXT, "description": "The policy rule that classified the failure."},
            "worker": {**_TEXT, "description": "The worker process that ran it (host:pid)."},
            "sentry_event_id": {**_TEXT, "description": "The Sentry event it was reported as."},
            "waited_ms": {
                "type": ["integer", "null"],
                "description": "How long the job then waited for its next attempt.",
            },
        },
    },
    "JobDetail": {
        "type": "object",
        "description": "A job: the `evalq jobs show` document and what the job page shows.",
        "required": ["job_id", "queue", "actor", "state", "attempts"],
        "properties": {
            "job_id": {"type": "string"},
            "queue": _TEXT,
            "actor": _TEXT,
            "state": {
                "type": "string",
                "enum": [
                    "queued",
                    "running",
                    "retrying",
                    "succeeded",
                    "dead_lettered",
                    "aborted",
                    "dropped",
                ],
            },
            "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
            "running_attempt": {
                "type": ["object", "null"],
                "description": "The attempt running now.",
                "properties": {"n": {"type": "integer"}, "started_at": _TEXT, "worker": _TEXT},
            },
            "worker": {**_TEXT, "description": "The worker that ran its latest attempt."},
            "payload": {
                "type": ["object", "null"],
                "description": "The job's Dramatiq message, "
                "secrets redacted: from its queue or delay queue while it waits or runs, "
                "from its dead letter once dead, from the copy its record kept once it "
                "finished otherwise (history); for a message over EVALQ_HISTORY_PAYLOAD_BYTES, "
                "{size_bytes, excerpt} (history_excerpt); null where none is kept.",
            },
            "payload_source": {
                "type": ["string", "null"],
                "enum": [
                    "queue",
                    "delay_queue",
                    "dead_letter",
                    "history",
                    "history_excerpt",
                    "undecodable",
                    None,
                ],
            },
            "sentry_event_id": {
                **_TEXT,
                "description": "The latest Sentry event its failures were reported as.",
            },
            "category": _TEXT,
            "enqueued_at": _TEXT,
            "finished_at": _TEXT,
            "started_at": _TEXT,
            "error_type": _TEXT,
            "error_message": _TEXT,
            "evaluation_uuid": _TEXT,
            "target_uuid": _TEXT,
            "abort_requested_at": _TEXT,
            "dead_letter": {
                "anyOf": [{"$ref": "#/components/schemas/DeadLetter"}, {"type": "null"}]
            },
            "result": {"type": ["object", "null"]},
            "can_abort": {"type": "boolean"},
            "can_redrive": {"type": "boolean"},
        },
    },
    "DeadLetter": DeadLetterRecord.model_json_schema(),
}

#: The schema of each operation's 200 response, where one is given.
_RESPONSES = {
    ("get", "/api/jobs/{job_id}"): "JobDetail",
    ("get", "/api/dlq/{record_id}"): "DeadLetter",
}


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
        schema = _RESPONSES.get((method, path))
        ok: dict[str, Any] = {"description": "JSON document"}
        if schema is not None:
            ok["content"] = {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
            }
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": ok, "401": {"description": "no or wrong token"}},
        }  # fmt: skip
        if changes:
            operation["responses"]["403"] = {
                "description": "viewer token, read-only mode, or (session) no CSRF token"
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "evalq dashboard API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
