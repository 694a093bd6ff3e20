"""``evalq result JOB_ID`` and ``evalq export EVALUATION_UUID``: read what evaluations produced."""

from __future__ import annotations

import itertools
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

import workers
from workers import client
from workers.cli import exit_codes
from workers.cli.common import JsonFlag, connect, err, fail, out, print_json
from workers.cli.text import field, literal
from workers.results import ResultStore


def result(
    job_id: Annotated[str, typer.Argument(help="The job id `evalq submit` printed.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the job to finish.")] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Print the result of one evaluation job.

    Exit code 0 with the result; 1 when the job ended without one (dead-lettered, aborted,
    dropped); 3 when it has not finished yet; 4 when the job is unknown (or its record expired).
    """
    connect()
    handle = client.JobHandle(job_id)
    if handle.state() is None:
        fail(f"no job {job_id} (unknown, or its record has expired)", code=exit_codes.NOT_FOUND)
    try:
        evaluation_result = handle.result(timeout=wait)
    except client.JobFailed as failure:
        if as_json:
            print_json({"job_id": job_id, "state": failure.state, "error": failure.error,
                        "category": failure.category,
                        "dead_letter_id": failure.dead_letter_id})  # fmt: skip
        else:
            err.print(literal(str(failure)), soft_wrap=True)
        raise typer.Exit(exit_codes.FAILED) from None
    except TimeoutError:
        state = handle.state()
        if as_json:
            print_json({"job_id": job_id, "state": state, "error": None})
        else:
            err.print(literal(f"job {job_id} has no result yet (state: {state})"), soft_wrap=True)
        raise typer.Exit(exit_codes.NOT_FINISHED) from None
    document = evaluation_result.model_dump(mode="json")
    if as_json:
        print_json(document)
        return
    lines = []
    for key, value in document.items():
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        lines.append(field(key, value, multiline=key == "reason"))
    out.print(*lines, sep="\n", soft_wrap=True)


def export(
    evaluation_uuid: Annotated[str, typer.Argument(help="The evaluation's uuid.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write here instead of stdout.", show_default=False),
    ] = None,
) -> None:
    """Write every stored result of one evaluation as JSONL.

    One EvaluationResult per line, in target-uuid order. Exit code 4 when the evaluation has no
    stored result.
    """
    connect()
    store = ResultStore(workers.broker.client, ttl_s=workers.settings.result_ttl_s)
    results = store.iter_evaluation(evaluation_uuid)
    first = next(results, None)
    if first is None:
        fail(f"no stored results for evaluation {evaluation_uuid}", code=exit_codes.NOT_FOUND)
    count = 0
    sink_context = output.open("w", encoding="utf-8") if output else nullcontext(sys.stdout)
    with sink_context as sink:
        for item in itertools.chain([first], results):
            sink.write(item.model_dump_json() + "\n")
            count += 1
    if output:
        err.print(literal(f"{count} result(s) of evaluation {evaluation_uuid} written to {output}"),
                  soft_wrap=True)  # fmt: skip
