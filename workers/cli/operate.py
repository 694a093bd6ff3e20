"""Operator commands: follow a job, work the dead-letter queue."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

import workers
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from workers.cli.common import JsonFlag, connect, err, fail, out, print_json

jobs_app = typer.Typer(help="Follow jobs.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect, redrive and purge dead letters.", no_args_is_help=True)

QueueOption = Annotated[str | None, typer.Option("--queue", help="Only this queue.")]
CategoryOption = Annotated[str | None, typer.Option("--category", help="Only this category.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]
AllFlag = Annotated[bool, typer.Option("--all", help="Every record matching the filters.")]
Ids = Annotated[list[str] | None, typer.Argument(help="Dead-letter record ids.")]


def dead_letter_store() -> DeadLetters:
    """The dead-letter store of the Redis this command uses."""
    settings = workers.settings
    return DeadLetters(
        workers.broker.client,
        max_records=settings.dlq_max_records,
        max_age_s=settings.dlq_max_age_s,
    )


def _instant(value: str | None, option: str) -> int | None:
    """Milliseconds since the epoch from ``1764160000000`` or ``2026-11-26T12:00`` (UTC if no
    offset is given)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{option}: {value!r} is neither an ISO time nor epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _store() -> DeadLetters:
    connect()
    return dead_letter_store()


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


# --- jobs ------------------------------------------------------------------------------------


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: JsonFlag = False) -> None:
    """A job's state and attempt timeline."""
    connect()
    document = History(workers.broker.client).show(job_id)
    if document is None:
        fail(f"no job {job_id} (unknown, or its record has expired)", code=1)
    if as_json:
        print_json(document)
        return
    out.print(f"job {job_id}: [bold]{document['state']}[/bold] on {document['queue']} "
              f"({document['actor']})")  # fmt: skip
    table = Table("n", "started", "finished", "outcome", "category", "error")
    for attempt in document["attempts"]:
        error = f"{attempt['error_type'] or ''}: {attempt['error_message'] or ''}".strip(": ")
        table.add_row(
            str(attempt["n"]), _when(attempt["started_at"]), _when(attempt["finished_at"]),
            attempt["outcome"] or "", attempt["category"] or "", error[:120],
        )  # fmt: skip
    out.print(table)


# --- dlq -------------------------------------------------------------------------------------


def _summary(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "job_id": record.job_id,
        "queue": record.queue,
        "actor": record.actor,
        "category": record.category,
        "rule": record.rule,
        "error_type": record.error_type,
        "error_message": record.error_message,
        "attempts": len(record.attempts),
        "dead_at": record.dead_at,
    }


@dlq_app.command("list")
def dlq_list(
    queue: QueueOption = None,
    category: CategoryOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Records per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Dead at or after (ISO time or epoch ms).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Dead at or before (ISO time or epoch ms).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, newest first, one page at a time."""
    store = _store()
    try:
        page = store.list(
            queue=queue, category=category, limit=limit, cursor=cursor,
            since_ms=_instant(since, "--since"), until_ms=_instant(until, "--until"),
        )  # fmt: skip
    except ValueError as error:
        fail(str(error))
    rows = [_summary(r) for r in page.records]
    if as_json:
        print_json({"records": rows, "next_cursor": page.next_cursor})
        return
    table = Table("id", "job", "queue", "category", "rule", "attempts", "error", "dead at")
    for row in rows:
        table.add_row(row["id"], row["job_id"], row["queue"], row["category"], row["rule"] or "",
                      str(row["attempts"]), f"{row['error_type']}: {row['error_message']}"[:80],
                      _when(row["dead_at"]))  # fmt: skip
    out.print(table)
    if page.next_cursor:
        out.print(f"more: evalq dlq list --cursor {page.next_cursor}")


@dlq_app.command("show")
def dlq_show(record_id: str, as_json: JsonFlag = False) -> None:
    """One dead letter in full: the error, its chain, the attempts and the payload."""
    record = _store().get(record_id)
    if record is None:
        fail(f"no dead letter {record_id}", code=1)
    document = record.model_dump(mode="json")
    if as_json:
        print_json(document)
        return
    for key, value in document.items():
        if key in ("traceback", "payload", "attempts"):
            continue
        out.print(f"[bold]{key}[/bold]: {value}", highlight=False)
    out.print("[bold]attempts[/bold]:")
    for attempt in document["attempts"]:
        out.print(f"  {json.dumps(attempt)}", highlight=False, markup=False)
    out.print("[bold]payload[/bold]:")
    out.print(json.dumps(document["payload"], indent=2), highlight=False, markup=False)
    out.print("[bold]traceback[/bold]:")
    out.print(document["traceback"], highlight=False, markup=False)


def _selection(ids: list[str] | None, everything: bool, queue: str | None,
               category: str | None) -> list[str] | None:  # fmt: skip
    if ids and everything:
        fail("give record ids or --all, not both")
    if not ids and not everything:
        fail("give record ids, or --all (with --queue/--category to narrow it)")
    return ids or None


@dlq_app.command("redrive")
def dlq_redrive(
    ids: Ids = None,
    everything: AllFlag = False,
    queue: QueueOption = None,
    category: CategoryOption = None,
    to_queue: Annotated[str | None, typer.Option("--to-queue", help="Send here instead.")] = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Put dead jobs back on a queue with fresh budgets; each record goes only once its job is
    enqueued."""
    selected = _selection(ids, everything, queue, category)
    outcomes = _store().redrive(
        selected, queue=queue, category=category, to_queue=to_queue, dry_run=dry_run,
        now_ms=int(time.time() * 1000),
    )  # fmt: skip
    rows = [
        {"id": o.id, "job_id": o.job_id, "queue": o.queue, "redriven": o.redriven,
         "reason": o.reason}
        for o in outcomes
    ]  # fmt: skip
    # A dry run reports each record it would redrive with the reason "dry run".
    refused = [r for r in rows if not r["redriven"] and not (dry_run and r["reason"] == "dry run")]
    if as_json:
        print_json({"dry_run": dry_run, "results": rows})
    else:
        for row in refused:
            err.print(f"{row['id']}: not redriven: {row['reason']}", highlight=False)
        count = len(rows) - len(refused)
        out.print(f"{count} record(s) {'would be redriven' if dry_run else 'redriven'}")
    if refused:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    ids: Ids = None,
    everything: AllFlag = False,
    queue: QueueOption = None,
    category: CategoryOption = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete dead letters for good."""
    selected = _selection(ids, everything, queue, category)
    count = _store().purge(selected, queue=queue, category=category, dry_run=dry_run)
    if as_json:
        print_json({"dry_run": dry_run, "purged": count})
    else:
        out.print(f"{count} record(s) {'would be ' if dry_run else ''}purged")
