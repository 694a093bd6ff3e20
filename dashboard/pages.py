"""The server-rendered pages. Each page reads through ``dashboard.queries`` (as the API does);
an htmx request (``HX-Request``) gets the page's live part alone, which the page polls."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dashboard import actions, queries
from dashboard.auth import csrf_token, principal_of
from dashboard.bulk import BULK_KINDS, BulkActions
from dashboard.charts import HEIGHT, WIDTH, chart_lines
from dashboard.filters import DeadLetterFilter, JobFilter, limit_of
from dashboard.services import Services
from middleware.state.job_states import STATES


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render ``template`` with what every page needs: who is logged in, whether they may act,
    the CSRF token."""
    principal = principal_of(request)
    read_only = request.app.state.tokens.read_only
    response: Response = request.app.state.templates.TemplateResponse(
        request, template, {
            "principal": principal, "read_only": read_only,
            "can_act": principal.role == "operator" and not read_only,
            "csrf": csrf_token(request), "queues": _services(request).queues, **context,
        }, status_code=status_code,
    )  # fmt: skip
    return response


def _partial(request: Request) -> bool:
    return "HX-Request" in request.headers


def overview(request: Request) -> Response:
    services = _services(request)
    data = queries.overview(services)
    lines, peak = chart_lines(data["chart"])
    running = queries.running_jobs(services)
    template = "_overview.html" if _partial(request) else "overview.html"
    return render(request, template, data=data, lines=lines, peak=peak, width=WIDTH,
                  height=HEIGHT, running=running)  # fmt: skip


def running(request: Request) -> Response:
    jobs = queries.running_jobs(_services(request))
    template = "_running.html" if _partial(request) else "running.html"
    return render(request, template, running=jobs)


def history(request: Request) -> Response:
    params = request.query_params
    wanted = (params.get("id") or "").strip()
    if wanted:
        return RedirectResponse(request.url_for("job", job_id=wanted), status_code=303)
    error = page = None
    try:
        selection = JobFilter.parse(params)
        page = queries.history_page(_services(request), selection, limit=limit_of(params),
                                    cursor=params.get("cursor"))  # fmt: skip
    except ValueError as problem:
        selection, error = JobFilter(), str(problem)
    next_url = None
    if page and page["next_cursor"]:
        next_url = "?" + urlencode({**dict(params), "cursor": page["next_cursor"]})
    return render(request, "history.html", page=page, error=error, params=params,
                  states=STATES, next_url=next_url, selection=selection)  # fmt: skip


def job(request: Request) -> Response:
    document = queries.job_detail(_services(request), request.path_params["job_id"])
    if document is None:
        return render(request, "missing.html", status_code=404,
                      what=f"job {request.path_params['job_id']}")  # fmt: skip
    if _partial(request):
        # 286 tells htmx to stop polling: a finished job does not change any more.
        finished = document["state"] not in ("queued", "running", "retrying")
        return render(request, "_job.html", status_code=286 if finished else 200, job=document)
    return render(request, "job.html", job=document)


def abort(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    actions.abort_job(_services(request), request, job_id)
    # The job's page shows the abort land (its state turns aborted once the worker stops it).
    return RedirectResponse(request.url_for("job", job_id=job_id), status_code=303)


def dead_letters(request: Request) -> Response:
    params = request.query_params
    error = page = None
    selection = DeadLetterFilter()
    try:
        selection = DeadLetterFilter.parse(params)
        page = queries.dead_letter_page(
            _services(request).dead_letters, selection,
            limit=limit_of(params), cursor=params.get("cursor"),
        )  # fmt: skip
    except ValueError as problem:
        error = str(problem)
    next_url = None
    if page and page["next_cursor"]:
        next_url = "?" + urlencode({**dict(params), "cursor": page["next_cursor"]})
    filter_query = urlencode({k: v for k, v in params.items() if k not in ("cursor", "limit")})
    stats = _services(request).dead_letters.stats()
    return render(request, "dlq.html", page=page, error=error, params=params,
                  next_url=next_url, filter_query=filter_query, selection=selection,
                  stats=stats, recent=BulkActions(_services(request)).recent(5))  # fmt: skip


def dead_letter(request: Request) -> Response:
    record = _services(request).dead_letters.get(request.path_params["record_id"])
    if record is None:
        return render(request, "missing.html", status_code=404,
                      what=f"dead letter {request.path_params['record_id']}")  # fmt: skip
    return render(request, "dlq_record.html", record=record.model_dump(mode="json"))


def redrive(request: Request) -> Response:
    outcome = actions.redrive_record(_services(request), request, request.path_params["record_id"])
    message = (f"job {outcome['job_id']} redriven to {outcome['queue']}" if outcome["redriven"]
               else f"not redriven: {outcome['reason']}")  # fmt: skip
    return render(request, "done.html", message=message, back=request.url_for("dead_letters"))


def purge(request: Request) -> Response:
    outcome = actions.purge_record(_services(request), request, request.path_params["record_id"])
    message = "dead letter purged" if outcome["purged"] else "no such dead letter"
    return render(request, "done.html", message=message, back=request.url_for("dead_letters"))


def bulk_confirm(request: Request) -> Response:
    """The confirmation of a bulk action: what it covers and how many records it will touch."""
    params = request.query_params
    kind = params.get("kind")
    if kind not in BULK_KINDS:
        return Response("kind must be redrive or purge", status_code=400)
    try:
        selection = DeadLetterFilter.parse(params)
    except ValueError as problem:
        return Response(str(problem), status_code=400)
    matching = BulkActions(_services(request)).matching(selection)
    return render(request, "bulk_confirm.html", kind=kind, selection=selection,
                  matching=matching, changed=params.get("changed"))  # fmt: skip


async def bulk_start(request: Request) -> Response:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    kind = fields.get("kind")
    try:
        selection = DeadLetterFilter.parse(fields)
        confirmed = int(fields.get("confirm", ""))
    except ValueError as problem:
        return Response(f"bad bulk request: {problem}", status_code=400)
    if kind not in BULK_KINDS:
        return Response("kind must be redrive or purge", status_code=400)
    bulk = BulkActions(_services(request))
    matching = await run_in_threadpool(bulk.matching, selection)
    if matching != confirmed:
        # The set changed since the confirmation was shown: show it again with the new count.
        query = {k: v for k, v in fields.items() if k not in ("csrf", "confirm")}
        query["changed"] = str(confirmed)
        return RedirectResponse("/dlq/bulk/confirm?" + urlencode(query), status_code=303)
    record = await run_in_threadpool(bulk.start, kind, selection, who=principal_of(request).who)
    return RedirectResponse(request.url_for("bulk_action", action_id=record["id"]), status_code=303)


def bulk_action(request: Request) -> Response:
    record = BulkActions(_services(request)).get(request.path_params["action_id"])
    if record is None:
        return render(request, "missing.html", status_code=404, what="bulk action")
    if _partial(request):
        status = 200 if record["state"] == "running" else 286
        return render(request, "_bulk.html", status_code=status, action=record)
    return render(request, "bulk.html", action=record)


def bulk_actions(request: Request) -> Response:
    return render(request, "actions.html", actions=BulkActions(_services(request)).recent(50))


ROUTES = [
    Route("/", overview, name="overview"),
    Route("/running", running, name="running"),
    Route("/jobs", history, name="history"),
    Route("/jobs/{job_id}", job, name="job"),
    Route("/jobs/{job_id}/abort", abort, methods=["POST"], name="abort"),
    Route("/dlq", dead_letters, name="dead_letters"),
    Route("/dlq/bulk/confirm", bulk_confirm, name="bulk_confirm"),
    Route("/dlq/bulk", bulk_start, methods=["POST"], name="bulk_start"),
    Route("/dlq/bulk/{action_id}", bulk_action, name="bulk_action"),
    Route("/dlq/actions", bulk_actions, name="bulk_actions"),
    Route("/dlq/records/{record_id}", dead_letter, name="dead_letter"),
    Route("/dlq/records/{record_id}/redrive", redrive, methods=["POST"], name="redrive"),
    Route("/dlq/records/{record_id}/purge", purge, methods=["POST"], name="purge"),
]
