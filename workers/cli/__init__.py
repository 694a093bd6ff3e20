"""The ``evalq`` command line: run the demo, run workers, submit evaluations, read results."""

from __future__ import annotations

import contextlib
import importlib.metadata
import signal
import time
from typing import Annotated, Any

import typer

import workers
from middleware.core.redaction import redact_text
from workers.cli.common import JsonFlag, connect, err, fail, out, print_json, run
from workers.cli.text import aligned, literal
from workers.lanes import lanes
from workers.local_redis import advertise, owned_redis, up_lock
from workers.process_group import ProcessGroup
from workers.status import collect_status

app = typer.Typer(
    name="evalq",
    help="Reliable LLM evaluation workers on Dramatiq.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"evalq {importlib.metadata.version('evalq')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Reliable LLM evaluation workers on Dramatiq."""


def _register_operator_commands() -> None:
    from workers.cli.abort import abort_job
    from workers.cli.dashboard import dashboard
    from workers.cli.jobs import jobs_list
    from workers.cli.operate import dlq_app, jobs_app
    from workers.cli.policy import policy_app
    from workers.cli.results import export, result
    from workers.cli.submit import submit

    app.command("submit")(submit)
    app.command("result")(result)
    app.command("export")(export)
    jobs_app.command("list")(jobs_list)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(policy_app, name="policy")
    app.command("abort")(abort_job)
    app.command("dashboard")(dashboard)


_register_operator_commands()


def main() -> None:
    """Entry point of the ``evalq`` console script."""
    # SIGTERM (from a process manager or `kill`) and SIGINT stop as gracefully as Ctrl-C does:
    # pools first, then the embedded Redis. SIGINT is set too because a shell without job
    # control starts `evalq up &` with SIGINT ignored, and Python keeps an ignored SIGINT.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    run(app)


def _interrupt(signum: int, frame: Any) -> None:
    # Once: a second signal while the pools and Redis stop must not cut that short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Show queue depths, dead letters and live workers.

    Lists the lanes' queues and every other queue that holds messages or dead letters. Anything
    but 0 under "nacked" deserves a look: those are messages the error policy could not settle.
    """
    connect()
    from workers.cli.operate import dead_letter_store

    snapshot = collect_status(workers.broker.client, dead_letter_store())
    if as_json:
        print_json(snapshot)
        return
    columns = ("ready", "delayed", "running", "dead_lettered", "throttled", "nacked")
    queues = aligned(
        ("queue", *columns),
        [(name, *(counts[k] for k in columns)) for name, counts in snapshot["queues"].items()],
    )
    pool = aligned(
        ("worker", "threads", "last seen", "queues"),
        [
            (w["id"], w["threads"], f"{w['last_seen_ms_ago'] / 1000:.1f} s ago",
             ", ".join(w["queues"]))
            for w in snapshot["workers"]
        ],
    )  # fmt: skip
    out.print(*queues, "", *(pool if snapshot["workers"] else ["no live workers"]), "",
              sep="\n", soft_wrap=True)  # fmt: skip
    dlq = snapshot["dlq"]
    categories = ", ".join(f"{name} {count}" for name, count in sorted(dlq["by_category"].items()))
    out.print(
        literal(f"dead letters: {dlq['total']}" + (f" ({categories})" if categories else "")),
        soft_wrap=True,
    )
    if dlq["overflow"] or dlq["expired"]:
        out.print(
            f"retention evicted {dlq['overflow']} dead letter(s) over the count limit "
            f"and {dlq['expired']} over the age limit",
            style="yellow", highlight=False, soft_wrap=True,
        )  # fmt: skip
    nacked = sum(counts["nacked"] for counts in snapshot["queues"].values())
    if nacked:
        out.print(
            f"{nacked} message(s) in Dramatiq's dead sets (nacked): the error policy could not "
            "settle them; see the worker logs",
            style="yellow", highlight=False, soft_wrap=True,
        )  # fmt: skip


@app.command()
def up() -> None:
    """Run Redis (embedded without EVALQ_REDIS_URL) and a worker pool per lane, until Ctrl-C."""
    settings = workers.settings
    from workers.cli.dashboard import dashboard_beside

    with (
        up_lock(settings),
        owned_redis(settings, persist=True) as (url, embedded),
        ProcessGroup() as group,
    ):
        for lane in lanes(workers.settings):
            group.start(lane.name, lane.worker_argv(), env={"EVALQ_REDIS_URL": url})
        board = dashboard_beside(url, out)
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
            with board, advertise(settings, url) if embedded else contextlib.nullcontext():
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
    from workers.cli.dashboard import dashboard_beside
    from workers.demo.runner import run_demo

    console = err if as_json else out
    summary = run_demo(workers.settings, console=console, quiet=as_json,
                       beside=lambda url: dashboard_beside(url, console))  # fmt: skip
    if as_json:
        print_json(summary)
    if summary["pending"]:
        raise typer.Exit(1)
