"""The JSON API under /api/: every page's data and every action, for scripts and for the pages'
live updates. Authentication and roles are the middleware's (``dashboard.auth``); bearer tokens
work here, so do sessions (with their CSRF token on actions)."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dashboard import actions, queries
from dashboard.auth import principal_of
from dashboard.bulk import BULK_KINDS, BulkActions
from dashboard.filters import DeadLetterFilter, JobFilter, limit_of
from dashboard.openapi import openapi_document
from dashboard.services import Services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _bad(error: Exception, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=status)


def overview(request: Request) -> Response:
    return JSONResponse(queries.overview(_services(request)))


def running(request: Request) -> Response:
    return JSONResponse({"jobs": queries.running_jobs(_services(request))})


def workers(request: Request) -> Response:
    return JSONResponse({"workers": queries.workers(_services(request))})


def jobs(request: Request) -> Response:
    try:
        selection = JobFilter.parse(request.query_params)
        limit = limit_of(request.query_params)
        page = queries.history_page(
            _services(request), selection, limit=limit, cursor=request.query_params.get("cursor")
        )
    except ValueError as error:  # BadFilter included
        return _bad(error)
    return JSONResponse(page)


def job(request: Request) -> Response:
    document = queries.job_detail(_services(request), request.path_params["job_id"])
    if document is None:
        return _bad(ValueError("no such job (unknown, or its record has expired)"), 404)
    return JSONResponse(document)


def abort(request: Request) -> Response:
    outcome = actions.abort_job(_services(request), request, request.path_params["job_id"])
    return JSONResponse(outcome, status_code=200 if outcome["aborted"] else 409)


def dead_letters(request: Request) -> Response:
    try:
        selection = DeadLetterFilter.parse(request.query_params)
        page = queries.dead_letter_page(
            _services(request).dead_letters, selection,
            limit=limit_of(request.query_params), cursor=request.query_params.get("cursor"),
        )  # fmt: skip
    except ValueError as error:
        return _bad(error)
    return JSONResponse(page)


def dead_letter(request: Request) -> Response:
    record = _services(request).dead_letters.get(request.path_params["record_id"])
    if record is None:
        return _bad(ValueError("no such dead letter"), 404)
    return JSONResponse(record.model_dump(mode="json"))


def redrive(request: Request) -> Response:
    outcome = actions.redrive_record(_services(request), request, request.path_params["record_id"])
    return JSONResponse(outcome, status_code=200 if outcome["redriven"] else 409)


def purge(request: Request) -> Response:
    outcome = actions.purge_record(_services(request), request, request.path_params["record_id"])
    return JSONResponse(outcome, status_code=200 if outcome["purged"] else 404)


def bulk_preview(request: Request) -> Response:
    try:
        selection = DeadLetterFilter.parse(request.query_params)
    except ValueError as error:
        return _bad(error)
    matching = BulkActions(_services(request)).matching(selection)
    return JSONResponse({"filter": selection.as_dict(), "matching": matching})


async def bulk_start(request: Request) -> Response:
    """Body: ``{"kind": "redrive"|"purge", "filter": {...}, "confirm": N}`` where N is the count
    the preview showed; a different current count is refused (409) with the new count."""
    try:
        body: dict[str, Any] = json.loads(await request.body() or b"{}")
        kind = body.get("kind")
        if kind not in BULK_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(BULK_KINDS)}")
        selection = DeadLetterFilter.parse({k: str(v) for k, v in (body.get("filter") or {}).items()
                                            if v is not None})  # fmt: skip
        confirm = int(body["confirm"])
    except (KeyError, TypeError, ValueError) as error:
        return _bad(ValueError(f"bad bulk request: {error}; send kind, filter and confirm"))
    bulk = BulkActions(_services(request))
    matching = await run_in_threadpool(bulk.matching, selection)
    if matching != confirm:
        return JSONResponse(
            {"error": f"{matching} record(s) match now, not {confirm}: confirm again",
             "matching": matching}, status_code=409,
        )  # fmt: skip
    record = await run_in_threadpool(bulk.start, kind, selection, who=principal_of(request).who)
    return JSONResponse(record, status_code=202)


def bulk_list(request: Request) -> Response:
    return JSONResponse({"actions": BulkActions(_services(request)).recent()})


def bulk_show(request: Request) -> Response:
    record = BulkActions(_services(request)).get(request.path_params["action_id"])
    if record is None:
        return _bad(ValueError("no such bulk action"), 404)
    return JSONResponse(record)


def schema(request: Request) -> Response:
    return JSONResponse(openapi_document())


ROUTES = [
    Route("/api/openapi.json", schema, name="api_schema"),
    Route("/api/overview", overview, name="api_overview"),
    Route("/api/running", running, name="api_running"),
    Route("/api/workers", workers, name="api_workers"),
    Route("/api/jobs", jobs, name="api_jobs"),
    Route("/api/jobs/{job_id}", job, name="api_job"),
    Route("/api/jobs/{job_id}/abort", abort, methods=["POST"], name="api_abort"),
    Route("/api/dlq/bulk", bulk_list, name="api_bulk_list"),
    Route("/api/dlq/bulk", bulk_start, methods=["POST"], name="api_bulk_start"),
    Route("/api/dlq/bulk/preview", bulk_preview, name="api_bulk_preview"),
    Route("/api/dlq/bulk/{action_id}", bulk_show, name="api_bulk_show"),
    Route("/api/dlq", dead_letters, name="api_dead_letters"),
    Route("/api/dlq/{record_id}", dead_letter, name="api_dead_letter"),
    Route("/api/dlq/{record_id}/redrive", redrive, methods=["POST"], name="api_redrive"),
    Route("/api/dlq/{record_id}/purge", purge, methods=["POST"], name="api_purge"),
]
