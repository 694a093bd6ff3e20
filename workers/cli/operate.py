"""Operator commands: follow a job, work the dead-letter queue."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.text import Text

import workers
from config.policy import CATEGORIES
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import History
from workers.cli import exit_codes
from workers.cli.common import JsonFlag, connect, err, fail, out, print_json
from workers.cli.text import aligned, field, literal
from workers.instants import instant_ms

jobs_app = typer.Typer(help="Follow jobs.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect, redrive and purge dead letters.", no_args_is_help=True)

QueueOption = Annotated[str | None, typer.Option("--queue", help="Only this queue.")]


def _known_category(value: str | None) -> str | None:
    """Refuse a category outside the taxonomy, which would match nothing and look like none."""
    if value is not None and value not in CATEGORIES:
        fail(f"--category: unknown category {value!r}; known: {', '.join(CATEGORIES)}")
    return value


CategoryOption = Annotated[
    str | None,
    typer.Option("--category", help="Only this category.", callback=_known_category),
]
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


def _store() -> DeadLetters:
    connect()
    return dead_letter_store()


def _when(ms: int | str | None) -> str:
    """Milliseconds since the epoch as a UTC time to the millisecond; "" for none."""
    if not ms:
        return ""
    moment = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


# --- jobs ------------------------------------------------------------------------------------


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: JsonFlag = False) -> None:
    """A job's state and attempt timeline (times in UTC).

    Exit code 4 when the job is unknown (or its record has expired).
    """
    connect()
    document = History(workers.broker.client).show(job_id)
    if document is None:
        fail(f"no job {job_id} (unknown, or its record has expired)", code=exit_codes.NOT_FOUND)
    if as_json:
        print_json(document)
        return
    lines = [
        Text.assemble(
            "job ", literal(job_id), ": ", literal(document["state"], style="bold"), " on ",
            literal(document["queue"]), " (", literal(document["actor"]), ")",
        )
    ]  # fmt: skip
    for key in ("category", "dead_letter_id", "error_type", "error_message"):
        if document.get(key):
            lines.append(field(key, document[key], multiline=key == "error_message"))
    lines.extend(attempt_lines(document["attempts"]))
    out.print(*lines, sep="\n", soft_wrap=True)


def attempt_lines(attempts: list[dict[str, Any]]) -> list[Text]:
    """An attempt timeline as aligned rows, each attempt's error whole on the line below it."""
    header = ("n", "started (UTC)", "finished (UTC)", "outcome", "category")
    rows = [
        (a["n"], _when(a.get("started_at")), _when(a.get("finished_at")), a.get("outcome") or "",
         a.get("category") or "")
        for a in attempts
    ]  # fmt: skip
    table = aligned(header, rows)
    lines = [table[0]]
    for attempt, line in zip(attempts, table[1:], strict=True):
        lines.append(line)
        error = _error_text(attempt.get("error_type"), attempt.get("error_message"))
        if error:
            lines.append(Text("    ") + literal(error))
    return lines


def _error_text(error_type: str | None, message: str | None) -> str:
    if not error_type and not message:
        return ""
    return f"{error_type or 'error'}: {message or ''}"


# --- dlq -------------------------------------------------------------------------------------


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
            since_ms=instant_ms(since, "--since"), until_ms=instant_ms(until, "--until"),
        )  # fmt: skip
    except ValueError as error:
        fail(str(error))
    rows = [r.summary() for r in page.records]
    if as_json:
        print_json({"records": rows, "next_cursor": page.next_cursor})
        return
    header = ("id", "dead at (UTC)", "queue", "category", "rule", "attempts", "job")
    table = aligned(header, [
        (r["id"], _when(r["dead_at"]), r["queue"], r["category"], r["rule"] or "", r["attempts"],
         r["job_id"])
        for r in rows
    ])  # fmt: skip
    lines = [table[0]]
    for row, line in zip(rows, table[1:], strict=True):
        error = _error_text(row["error_type"], row["error_message"])
        lines += [line, Text("    ") + literal(error)]
    if not rows:
        lines = [Text("no dead letters match")]
    out.print(*lines, sep="\n", soft_wrap=True)
    if page.next_cursor:
        out.print(f"more: evalq dlq list --cursor {page.next_cursor}", soft_wrap=True)


@dlq_app.command("show")
def dlq_show(record_id: str, as_json: JsonFlag = False) -> None:
    """One dead letter in full: the error, its chain, the attempts and the payload (times in
    UTC). Exit code 4 when there is no such record."""
    record = _store().get(record_id)
    if record is None:
        fail(f"no dead letter {record_id}", code=exit_codes.NOT_FOUND)
    document = record.model_dump(mode="json")
    if as_json:
        print_json(document)
        return
    lines = []
    for key, value in document.items():
        if key in ("traceback", "payload", "attempts"):
            continue
        if key in _TIMES:
            value = f"{_when(value)} UTC ({value})"
        elif key == "chain_types":
            value = " <- ".join(value)
        lines.append(field(key, "" if value is None else value, multiline=key in _MULTILINE))
    lines += [Text("attempts:", style="bold"), *attempt_lines(document["attempts"])]
    payload = json.dumps(document["payload"], indent=2, ensure_ascii=False)
    lines += [Text("payload:", style="bold"), literal(payload, multiline=True)]
    lines += [Text("traceback:", style="bold"), literal(document["traceback"], multiline=True)]
    out.print(*lines, sep="\n", soft_wrap=True)


#: Fields of a dead-letter record shown with their line breaks (a pydantic error has many).
_MULTILINE = frozenset({"error_message", "reason"})
#: Fields of a dead-letter record that hold milliseconds since the epoch.
_TIMES = frozenset({"first_failure_at", "last_failure_at", "dead_at"})


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
            err.print(literal(f"{row['id']}: not redriven: {row['reason']}"), soft_wrap=True)
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
