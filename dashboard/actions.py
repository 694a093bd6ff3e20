"""The dashboard's single-record actions, shared by the pages and the API: abort a job, redrive
or purge one dead letter. Each is logged with who did it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from dashboard.auth import log_action
from dashboard.services import Services
from middleware.state.aborts import request_abort


def abort_job(services: Services, request: Request, job_id: str) -> dict[str, Any]:
    """Request an abort of ``job_id`` (``evalq abort``'s document, plus ``requested``)."""
    outcome = request_abort(services.client, job_id, ttl_s=services.job_ttl_s)
    log_action(request, "abort", job_id=job_id, result=outcome.result)
    return outcome.as_dict()


def redrive_record(services: Services, request: Request, record_id: str) -> dict[str, Any]:
    """Redrive one dead letter; ``redriven`` False with a ``reason`` when it was not."""
    (outcome,) = services.dead_letters.redrive([record_id], now_ms=services.clock())
    log_action(request, "redrive", record_id=record_id, redriven=outcome.redriven)
    return {"id": outcome.id, "job_id": outcome.job_id, "queue": outcome.queue,
            "redriven": outcome.redriven, "reason": outcome.reason}  # fmt: skip


def purge_record(services: Services, request: Request, record_id: str) -> dict[str, Any]:
    """Delete one dead letter for good."""
    purged = services.dead_letters.purge([record_id])
    log_action(request, "purge", record_id=record_id, purged=purged)
    return {"id": record_id, "purged": bool(purged)}
