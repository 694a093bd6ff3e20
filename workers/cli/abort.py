"""``evalq abort JOB_ID``: stop a job, whether it waits in a queue or runs in a worker."""

from __future__ import annotations

from typing import Annotated

import typer

from workers import client
from workers.cli import exit_codes
from workers.cli.common import JsonFlag, connect, out, print_json
from workers.cli.text import literal


def abort_job(
    job_id: Annotated[str, typer.Argument(help="The job to abort.")],
    as_json: JsonFlag = False,
) -> None:
    """Abort a job: a queued or delayed job never runs; a running job is interrupted in its
    worker. It ends as aborted in the DLQ (never retried; redrive runs it again).

    Exit code 0 when an abort was requested, 1 when the job had already finished, 4 when it is
    unknown.
    """
    connect()
    outcome = client.abort(job_id)
    if as_json:
        print_json(outcome.as_dict())
    else:
        out.print(literal(outcome.message), soft_wrap=True)
    if outcome.state_before is None:
        raise typer.Exit(exit_codes.NOT_FOUND)
    if not outcome.requested:
        raise typer.Exit(exit_codes.FAILED)
