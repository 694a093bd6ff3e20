"""The actors evalq workers run.

Evaluations run on lanes of their own (``evaluations.live`` for interactive work,
``evaluations.batch`` for bulk runs) through one code path; result exports run on ``default``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq

from workers import runtime
from workers.evaluations.evaluate import evaluate
from workers.evaluations.models import EvaluationRequest
from workers.lanes import BATCH_QUEUE, DEFAULT_QUEUE, LIVE_QUEUE

#: Actors that call the provider: their time limit must outlast the provider's HTTP timeout.
LLM_ACTORS = ("run_live_evaluation", "run_batch_evaluation")


def _time_limit_ms(actor: str) -> int:
    return int(runtime.current().settings.time_limit_for(actor) * 1000)


def run_evaluation(payload: dict[str, Any]) -> dict[str, Any]:
    """Validate the payload, score it and store the result (overwriting any earlier one)."""
    request = EvaluationRequest.model_validate(payload)
    rt = runtime.current()
    result = evaluate(request, llm_client=rt.llm_client, slot=rt.rate_limits().slot)
    rt.results.put(result)
    return {"evaluation_uuid": result.evaluation_uuid, "target_uuid": result.target_uuid}


@dramatiq.actor(queue_name=LIVE_QUEUE, time_limit=_time_limit_ms("run_live_evaluation"))
def run_live_evaluation(request: dict[str, Any]) -> None:
    """Run one evaluation on the interactive lane."""
    run_evaluation(request)


@dramatiq.actor(queue_name=BATCH_QUEUE, time_limit=_time_limit_ms("run_batch_evaluation"))
def run_batch_evaluation(request: dict[str, Any]) -> None:
    """Run one evaluation on the bulk lane."""
    run_evaluation(request)


@dramatiq.actor(queue_name=DEFAULT_QUEUE, time_limit=_time_limit_ms("export_results"))
def export_results(evaluation_uuid: str) -> None:
    """Write every stored result of one evaluation to ``<export dir>/<evaluation uuid>.jsonl``.

    The file is written to a temporary name and renamed, so a reader never sees half an export.
    """
    rt = runtime.current()
    directory = Path(rt.settings.export_dir)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{evaluation_uuid}.jsonl"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".export-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for result in rt.results.iter_evaluation(evaluation_uuid):
                out.write(json.dumps(result.model_dump(), sort_keys=True) + "\n")
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


LANE_ACTORS = {"live": run_live_evaluation, "batch": run_batch_evaluation}


def timeout_problems(
    provider_timeout_s: float, time_limit_for: Callable[[str], float]
) -> list[str]:
    """Why these settings would let a provider request outlive the job that makes it."""
    problems = []
    for actor in LLM_ACTORS:
        limit = time_limit_for(actor)
        if provider_timeout_s >= limit:
            problems.append(
                f"EVALQ_PROVIDER_TIMEOUT_S ({provider_timeout_s:g} s) must be shorter than the "
                f"time limit of {actor} ({limit:g} s; EVALQ_TIME_LIMIT_S / EVALQ_TIME_LIMITS)"
            )
    return problems
