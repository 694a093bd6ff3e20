"""Dead-letter records as the error policy writes them, for tests."""

from __future__ import annotations

from typing import Any

import dramatiq

from middleware.state.dead_letter_record import DeadLetterRecord, payload_from_message

NOW = 1_700_000_000_000
BATCH = "evaluations.batch"
LIVE = "evaluations.live"


def make_message(queue: str = BATCH, **options: Any) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue,
        actor_name="run_batch_evaluation",
        args=({"evaluation": {"uuid": "e-1", "metric": "binary"}, "target": {"uuid": "t-1"}},),
        kwargs={"lane": "batch"},
        options={"redis_message_id": "delivery-1", **options},
        message_timestamp=NOW - 60_000,
    )


def make_record(
    *,
    dead_at: int = NOW,
    queue: str = BATCH,
    category: str = "model_capability",
    message: dramatiq.Message[Any] | None = None,
    **overrides: Any,
) -> DeadLetterRecord:
    message = message or make_message(queue)
    fields: dict[str, Any] = {
        "job_id": message.message_id,
        "queue": queue,
        "actor": message.actor_name,
        "category": category,
        "rule": "tools-not-supported",
        "reason": "model_capability: policy dead-letters it",
        "error_type": "openai.BadRequestError",
        "error_message": "tools is not supported in this model",
        "traceback": "Traceback (most recent call last):\n  ...\nopenai.BadRequestError: 400",
        "chain_types": ["workers.errors.JudgeError", "openai.BadRequestError"],
        "attempts": [
            {
                "n": 1,
                "started_at": dead_at - 900,
                "finished_at": dead_at,
                "outcome": "dead_lettered",
                "category": category,
                "error_type": "openai.BadRequestError",
                "error_message": "tools is not supported in this model",
            }
        ],
        "first_failure_at": dead_at,
        "last_failure_at": dead_at,
        "worker_host": "worker-1",
        "worker_pid": 4242,
        "payload": payload_from_message(message),
    }
    fields.update(overrides)
    return DeadLetterRecord.create(dead_at=dead_at, **fields)
