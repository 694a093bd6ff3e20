"""``evalq jobs list``: find jobs by queue, state, actor, category and time, a page at a time.

``evalq jobs show`` (one job's timeline) is in ``workers.cli.operate``; both hang off the same
``evalq jobs`` group.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

import workers
from middleware.state.job_states import STATES
from middleware.state.jobs import search_jobs
from workers.cli.common import JsonFlag, clock_time, connect, fail, instant, out, print_json

_COLUMNS = ("job", "queue", "actor", "state", "category", "attempts", "enqueued", "error")


def jobs_list(
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help=f"Only this state: {', '.join(STATES)}.")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    category: Annotated[
        str | None, typer.Option("--category", help="Only jobs whose latest failure has it.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Enqueued at or after (ISO time or epoch ms).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Enqueued at or before (ISO time or epoch ms).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Jobs per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Jobs, newest first, one page at a time (a page costs the same at any depth)."""
    if state is not None and state not in STATES:
        fail(f"--state must be one of {', '.join(STATES)}, not {state!r}")
    try:
        since_ms, until_ms = instant(since, "--since"), instant(until, "--until")
        connect()
        jobs, next_cursor = search_jobs(
            workers.broker.client, queue=queue, state=state, actor=actor, category=category,
            since_ms=since_ms, until_ms=until_ms, limit=limit, cursor=cursor,
        )  # fmt: skip
    except ValueError as error:
        fail(str(error))
    if as_json:
        print_json({"jobs": jobs, "next_cursor": next_cursor})
        return
    table = Table(*_COLUMNS)
    for job in jobs:
        error = f"{job['error_type'] or ''}: {job['error_message'] or ''}".strip(": ")
        table.add_row(
            job["job_id"], job["queue"] or "", job["actor"] or "", job["state"] or "",
            job["category"] or "", str(job["attempts"]), clock_time(job["enqueued_at"]),
            error[:80],
        )  # fmt: skip
    out.print(table)
    if next_cursor:
        out.print(f"more: evalq jobs list --cursor {next_cursor} (with the same filters)")
