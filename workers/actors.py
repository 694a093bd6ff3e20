"""The actors evalq workers run.

Evaluations run on lanes of their own (``evaluations.live`` for interactive work,
``evaluations.batch`` for bulk runs) through one code path; result exports run on ``default``.

Import this module only through ``workers.bootstrap.build_stack`` (or after it): the actors bind
to the broker it set, and reach their services through that broker (``runtime_of``). Their time
limits are applied when a worker boots (``workers.bootstrap.apply_time_limits``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import dramatiq
from pydantic import ValidationError

import workers
from middleware.core.errors import InvalidPayload
from workers.evaluations.evaluate import evaluate
from workers.evaluations.models import EvaluationRequest
from workers.lanes import BATCH_QUEUE, DEFAULT_QUEUE, LIVE_QUEUE
from workers.runtime import LLM_ACTORS, Runtime, runtime_of

#: The broker these actors are declared on: this process's evalq stack.
broker = workers.default_stack().broker

__all__ = ["LANE_ACTORS", "LLM_ACTORS", "export_results", "run_batch_evaluation",
           "run_evaluation", "run_live_evaluation"]  # fmt: skip


def run_evaluation(payload: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """Validate the payload, score it and store the result (overwriting any earlier one).

    A payload that fails validation is ``invalid_payload`` whatever the policy file says."""
    try:
        request = EvaluationRequest.model_validate(payload)
    except ValidationError as error:
        raise InvalidPayload(f"the evaluation request is invalid: {error}") from error
    result = evaluate(request, llm_client=rt.llm_client, slot=rt.rate_limits().slot)
    # The provider has answered (and billed): keep the answer while Redis comes back.
    rt.results.keep(result, patience_s=rt.settings.store_patience_s)
    return {"evaluation_uuid": result.evaluation_uuid, "target_uuid": result.target_uuid}


@dramatiq.actor(broker=broker, queue_name=LIVE_QUEUE)
def run_live_evaluation(request: dict[str, Any]) -> None:
    """Run one evaluation on the interactive lane."""
    run_evaluation(request, runtime_of(run_live_evaluation.broker))


@dramatiq.actor(broker=broker, queue_name=BATCH_QUEUE)
def run_batch_evaluation(request: dict[str, Any]) -> None:
    """Run one evaluation on the bulk lane."""
    run_evaluation(request, runtime_of(run_batch_evaluation.broker))


@dramatiq.actor(broker=broker, queue_name=DEFAULT_QUEUE)
def export_results(evaluation_uuid: str) -> None:
    """Write every stored result of one evaluation to ``<export dir>/<evaluation uuid>.jsonl``.

    The file is written to a temporary name and renamed, so a reader never sees half an export.
    """
    rt = runtime_of(export_results.broker)
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
