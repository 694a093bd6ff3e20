"""``evalq submit FILE.jsonl [--wait]``: validate a whole file, enqueue it, follow it to the end."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

import workers
from middleware.state import keys
from middleware.state.job_states import TERMINAL_STATES
from workers import client
from workers.cli import exit_codes
from workers.cli.common import JsonFlag, connect, err, fail, out, print_json
from workers.cli.text import aligned, literal
from workers.deduplication import DedupError
from workers.evaluations.models import EvaluationRequest
from workers.lanes import LANE_QUEUES, SUBMIT_LANES
from workers.requests_file import read_requests
from workers.results import ResultStore


def submit(
    file: Annotated[Path, typer.Argument(help="JSONL file, one EvaluationRequest per line.")],
    lane: Annotated[str, typer.Option(help="live or batch.")] = "batch",
    wait: Annotated[bool, typer.Option(help="Wait until every job has finished.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds (exit code 3).")
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

    Every bad line is reported with its number and nothing from the file is enqueued (exit code
    2). A line that duplicates an earlier job (see --dedup) is reported with that job's id and
    "deduplicated": true. With --wait: progress on stderr, then a summary; exit code 0 when
    every job succeeded, 1 when one ended without a result, 3 when --timeout passed first.
    """
    if lane not in SUBMIT_LANES:
        fail(f"--lane must be {' or '.join(SUBMIT_LANES)}, not {lane!r}")
    try:
        # Checked before the file is read, so a bad combination fails fast.
        chosen = client.dedup_for(dedup, dedup_window)
    except DedupError as error:
        fail(str(error))
    parsed, errors = read_requests(file, max_request_bytes=workers.settings.max_request_bytes)
    if errors:
        for bad_line in errors:
            err.print(literal(str(bad_line)), soft_wrap=True)
        fail(f"{len(errors)} bad line(s) in {file}; nothing was enqueued")
    connect()
    requests = [request for _, request in parsed]
    handles = client.submit_many(
        requests,
        lane=lane,  # type: ignore[arg-type]
        dedup=chosen.mode,
        dedup_window_s=chosen.window_s,
    )
    rows: list[dict[str, Any]] = [{"job_id": h.id, "deduplicated": h.deduplicated} for h in handles]
    queues = _job_queues(handles, LANE_QUEUES[lane])
    final = _wait(list(queues), timeout) if wait else None  # each job once
    if as_json:
        for row in rows:
            print_json(row if final is None else {**row, "state": final[row["job_id"]]})
    else:
        _print_jobs(parsed, rows, queues, final)
        out.print(_placement(rows, queues, lane), soft_wrap=True)
    if final is None:
        return
    summary = _summary(final, requests, [h.id for h in handles])
    (err if as_json else out).print(*summary, sep="\n", soft_wrap=True)
    unfinished = sum(1 for state in final.values() if state not in TERMINAL_STATES)
    if unfinished:
        fail(
            f"timed out after {timeout:g} s: {unfinished} of {len(final)} job(s) not finished "
            "(they go on running; follow them with `evalq jobs show JOB_ID`)",
            code=exit_codes.NOT_FINISHED,
        )
    if any(state != "succeeded" for state in final.values()):
        raise typer.Exit(exit_codes.FAILED)


def _job_queues(handles: list[client.JobHandle], lane_queue: str) -> dict[str, str]:
    """The queue of every job: the lane's for new jobs; a duplicate's from its job's record, as
    the earlier job may have been submitted on another lane."""
    queues = {h.id: lane_queue for h in handles if not h.deduplicated}
    earlier = [h.id for h in handles if h.id not in queues]
    if earlier:
        pipe = workers.broker.client.pipeline(transaction=False)
        for job_id in earlier:
            pipe.hget(keys.job_key(job_id), "queue")
        for job_id, queue in zip(earlier, pipe.execute(), strict=True):
            queues[job_id] = keys.text(queue) if queue is not None else "?"
    return {h.id: queues[h.id] for h in handles}


def _print_jobs(
    parsed: list[tuple[int, EvaluationRequest]],
    rows: list[dict[str, Any]],
    queues: dict[str, str],
    final: dict[str, str | None] | None,
) -> None:
    header = ("line", "job_id", "queue", "deduplicated", *(["state"] if final else []))
    table = [
        (number, row["job_id"], queues[row["job_id"]], str(row["deduplicated"]).lower(),
         *([final[row["job_id"]] or "unknown"] if final else []))
        for (number, _), row in zip(parsed, rows, strict=True)
    ]  # fmt: skip
    out.print(*aligned(header, table), sep="\n", soft_wrap=True)


def _placement(rows: list[dict[str, Any]], queues: dict[str, str], lane: str) -> Text:
    """Where the lines went: new jobs on the lane, duplicates wherever their jobs are."""
    new = sum(1 for row in rows if not row["deduplicated"])
    sentence = f"{new} new job(s) on lane {lane} ({LANE_QUEUES[lane]})"
    where = Counter(queues[row["job_id"]] for row in rows if row["deduplicated"])
    if where:
        spots = ", ".join(f"{count} on {queue}" for queue, count in sorted(where.items()))
        sentence += f"; {where.total()} deduplicated to existing jobs ({spots})"
    return literal(sentence)


# --- waiting ------------------------------------------------------------------------------------


def _wait(job_ids: list[str], timeout: float) -> dict[str, str | None]:
    """Poll until every job has finished or ``timeout`` passes, showing progress on stderr: a
    live bar on a terminal, else one line per 10 % of the jobs finished."""
    if err.is_terminal:
        return _wait_with_bar(job_ids, timeout, err)
    started = time.monotonic()
    reported = 0

    def update(states: dict[str, str | None]) -> None:
        nonlocal reported
        counts = Counter(states.values())
        done = sum(n for state, n in counts.items() if state in TERMINAL_STATES)
        tenth = done * 10 // len(states)
        if tenth > reported:
            reported = tenth
            err.print(
                f"evalq: {done}/{len(states)} finished ({tenth * 10} %) after "
                f"{time.monotonic() - started:.1f} s: {_counts(counts)}",
                soft_wrap=True, highlight=False,
            )  # fmt: skip

    return client.wait_all(job_ids, timeout=timeout, on_update=update)


def _wait_with_bar(job_ids: list[str], timeout: float, console: Console) -> dict[str, str | None]:
    columns = (TextColumn("jobs"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("wait", total=len(job_ids), detail="")

        def update(states: dict[str, str | None]) -> None:
            counts = Counter(states.values())
            done = sum(n for state, n in counts.items() if state in TERMINAL_STATES)
            progress.update(task, completed=done, detail=_counts(counts))

        return client.wait_all(job_ids, timeout=timeout, on_update=update)


def _counts(counts: Counter[str | None]) -> str:
    return (
        f"succeeded {counts['succeeded']}, dead-lettered {counts['dead_lettered']}, "
        f"running {counts['running']}, queued {counts['queued'] + counts['retrying']}"
    )


def _summary(
    final: dict[str, str | None], requests: list[EvaluationRequest], job_ids: list[str]
) -> list[Text]:
    """Jobs by final state, then per evaluation: passed, failed, no result, mean score."""
    by_state = Counter(state or "unknown" for state in final.values())
    lines = [literal(f"{len(final)} job(s): " + ", ".join(
        f"{count} {state}" for state, count in by_state.most_common()
    ))]  # fmt: skip
    jobs = dict(zip(job_ids, requests, strict=True))  # a duplicate line maps to its job once
    succeeded = [job_id for job_id in jobs if final[job_id] == "succeeded"]
    store = ResultStore(workers.broker.client, ttl_s=workers.settings.result_ttl_s)
    results = dict(zip(succeeded, store.get_many([jobs[j].result_key for j in succeeded]),
                       strict=True))  # fmt: skip
    per_evaluation: dict[str, dict[str, Any]] = {}
    for job_id, request in jobs.items():
        entry = per_evaluation.setdefault(
            str(request.evaluation.uuid),
            {"name": request.evaluation.name, "passed": 0, "failed": 0, "none": 0, "scores": []},
        )
        result = results.get(job_id)
        if result is None:
            entry["none"] += 1
            continue
        entry["passed" if result.has_passed else "failed"] += 1
        entry["scores"].append(result.normalized_score)
    header = ("evaluation", "name", "passed", "failed", "no result", "mean score")
    rows = [
        (uuid, e["name"], e["passed"], e["failed"], e["none"],
         f"{sum(e['scores']) / len(e['scores']):.1f}" if e["scores"] else "-")
        for uuid, e in per_evaluation.items()
    ]  # fmt: skip
    return lines + aligned(header, rows)
