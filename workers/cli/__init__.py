"""The ``evalq`` command line: run the demo, run workers, submit evaluations, read results."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import workers
from middleware.core.redaction import redact_text
from workers import client
from workers.cli.common import JsonFlag, connect, err, fail, out, print_json, run
from workers.deduplication import DedupError
from workers.lanes import lanes
from workers.local_redis import advertise, owned_redis, up_lock
from workers.process_group import ProcessGroup
from workers.requests_file import read_requests
from workers.status import collect_status

app = typer.Typer(
    name="evalq",
    help="Reliable LLM evaluation workers on Dramatiq.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_operator_commands() -> None:
    from workers.cli.abort import abort_job
    from workers.cli.operate import dlq_app, jobs_app
    from workers.cli.policy import policy_app

    app.add_typer(jobs_app, name="jobs")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(policy_app, name="policy")
    app.command("abort")(abort_job)


_register_operator_commands()


def main() -> None:
    """Entry point of the ``evalq`` console script."""
    # SIGTERM (from a process manager or `kill`) stops as gracefully as Ctrl-C does: pools
    # first, then the embedded Redis.
    signal.signal(signal.SIGTERM, _interrupt)
    run(app)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="JSONL file, one EvaluationRequest per line.")],
    lane: Annotated[str, typer.Option(help="live or batch.")] = "batch",
    wait: Annotated[bool, typer.Option(help="Wait until every job has finished.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds.")
    ] = 600.0,
    dedup: Annotated[
        str | None,
        typer.Option(
            help="When a line with the idempotency key of an earlier job returns that job: "
            "until_finished (while queued, running or retrying), until_started (while queued) "
            "or window (within --dedup-window seconds of its submission). "
            "Default: EVALQ_DEDUP_MODE, else until_finished.",
            show_default=False,
        ),
    ] = None,
    dedup_window: Annotated[
        float | None,
        typer.Option(
            help="With --dedup window: the window in seconds (default: EVALQ_DEDUP_WINDOW_S).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a whole JSONL file, then enqueue one evaluation job per line.

    A bad line is reported with its number and nothing from the file is enqueued. A line that
    duplicates an earlier job (see --dedup) is reported with that job's id and
    "deduplicated": true.
    """
    if lane not in ("live", "batch"):
        fail(f"--lane must be live or batch, not {lane!r}")
    try:
        # Checked before the file is read, so a bad combination fails fast.
        chosen = client.dedup_for(dedup, dedup_window)
    except DedupError as error:
        fail(str(error))
    parsed, errors = read_requests(file)
    if errors:
        for error in errors[:50]:
            err.print(str(error), highlight=False, markup=False)
        if len(errors) > 50:
            err.print(f"... and {len(errors) - 50} more bad lines", highlight=False)
        fail(f"{len(errors)} bad line(s) in {file}; nothing was enqueued")
    connect()
    handles = client.submit_many(
        [request for _, request in parsed],
        lane=lane,  # type: ignore[arg-type]
        dedup=chosen.mode,
        dedup_window_s=chosen.window_s,
    )
    rows: list[dict[str, Any]] = [{"job_id": h.id, "deduplicated": h.deduplicated} for h in handles]
    if wait:
        final = client.wait_all([h.id for h in handles], timeout=timeout)
        for row in rows:
            row["state"] = final[row["job_id"]]
    if as_json:
        for row in rows:
            print_json(row)
    else:
        table = Table("line", "job_id", "deduplicated", *(["state"] if wait else []))
        for (number, _), row in zip(parsed, rows, strict=True):
            table.add_row(
                str(number),
                row["job_id"],
                str(row["deduplicated"]).lower(),
                *([str(row["state"])] if wait else []),
            )
        out.print(table)
        deduplicated = sum(1 for row in rows if row["deduplicated"])
        out.print(f"{len(rows)} job(s) on lane {lane}, {deduplicated} deduplicated")
    if wait and any(row["state"] != "succeeded" for row in rows):
        raise typer.Exit(1)


@app.command()
def result(
    job_id: Annotated[str, typer.Argument(help="The job id `evalq submit` printed.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the job to finish.")] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Print the result of one evaluation job."""
    connect()
    handle = client.JobHandle(job_id)
    if handle.state() is None:
        fail(f"no job {job_id} (unknown, or its record has expired)", code=1)
    try:
        evaluation_result = handle.result(timeout=wait)
    except client.JobFailed as failure:
        if as_json:
            print_json({"job_id": job_id, "state": failure.state, "error": failure.error})
        else:
            err.print(str(failure), highlight=False, markup=False)
        raise typer.Exit(1) from None
    except TimeoutError:
        state = handle.state()
        if as_json:
            print_json({"job_id": job_id, "state": state, "error": None})
        else:
            err.print(f"job {job_id} has no result yet (state: {state})", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print_json(evaluation_result.model_dump(mode="json"))
        return
    table = Table(show_header=False)
    for key, value in evaluation_result.model_dump(mode="json").items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    out.print(table)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Show queue depths, dead letters and live workers."""
    connect()
    from workers.cli.operate import dead_letter_store

    snapshot = collect_status(workers.broker.client, dead_letter_store())
    if as_json:
        print_json(snapshot)
        return
    columns = ("ready", "delayed", "running", "dead_lettered", "throttled")
    queues = Table("queue", *columns, title="queues")
    for name, counts in snapshot["queues"].items():
        queues.add_row(name, *(str(counts[k]) for k in columns))
    out.print(queues)
    pool = Table("worker", "queues", "threads", "last seen", title="workers")
    for worker in snapshot["workers"]:
        pool.add_row(
            worker["id"],
            ", ".join(worker["queues"]),
            str(worker["threads"]),
            f"{worker['last_seen_ms_ago'] / 1000:.1f}s ago",
        )
    out.print(pool)
    dlq = snapshot["dlq"]
    categories = ", ".join(f"{name} {count}" for name, count in sorted(dlq["by_category"].items()))
    out.print(f"dead letters: {dlq['total']}" + (f" ({categories})" if categories else ""))
    if dlq["overflow"] or dlq["expired"]:
        out.print(
            f"[yellow]retention evicted {dlq['overflow']} dead letter(s) over the count limit "
            f"and {dlq['expired']} over the age limit[/yellow]"
        )


@app.command()
def up() -> None:
    """Run Redis (embedded without EVALQ_REDIS_URL) and a worker pool per lane, until Ctrl-C."""
    settings = workers.settings
    with (
        up_lock(settings),
        owned_redis(settings, persist=True) as (url, embedded),
        ProcessGroup() as group,
    ):
        for lane in lanes(workers.settings):
            group.start(lane.name, lane.worker_argv(), env={"EVALQ_REDIS_URL": url})
        where = "embedded Redis" if embedded else "Redis"
        out.print(
            f"evalq up: {where} at {redact_text(url)}; pools: "
            + ", ".join(
                f"{lane.queue} ({lane.processes}x{lane.threads})"
                for lane in lanes(workers.settings)
            )
        )
        if embedded:
            out.print("other evalq commands in this directory use it; Ctrl-C stops everything")
        try:
            with advertise(settings, url) if embedded else contextlib.nullcontext():
                _wait_for_pools(group)
        except KeyboardInterrupt:
            out.print("evalq up: stopping worker pools, then Redis")


def _wait_for_pools(group: ProcessGroup) -> None:
    while True:
        dead = {name: code for name, code in group.poll().items() if code is not None}
        if dead:
            exits = ", ".join(f"{name} (code {code})" for name, code in dead.items())
            fail(f"worker pool(s) exited: {exits}; stopping", code=1)
        time.sleep(0.5)


@app.command()
def demo(
    as_json: JsonFlag = False,
) -> None:
    """The main job, end to end: embedded Redis, a worker pool per lane, a simulated provider,
    the bundled dataset, a progress bar and a summary."""
    from workers.demo.runner import run_demo

    summary = run_demo(workers.settings, console=err if as_json else out, quiet=as_json)
    if as_json:
        print_json(summary)
    if summary["pending"]:
        raise typer.Exit(1)
