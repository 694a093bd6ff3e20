"""The dead-letter record of a failed job, built from what the error policy knows about it."""

from __future__ import annotations

import os
import socket
from typing import Any

from dramatiq.broker import MessageProxy

from middleware.attempts import OPTION_FIRST_FAILURE
from middleware.classify import Classification
from middleware.dead_letter_records import DeadLetterRecord
from middleware.decisions import Decision
from middleware.failure_text import error_message, traceback_text, type_name


def dead_letter_record(
    message: MessageProxy,
    *,
    classification: Classification | None,
    decision: Decision,
    exception: BaseException | None,
    timeline: list[dict[str, Any]],
    dead_at: int,
) -> DeadLetterRecord:
    """The record an operator reads to decide about a dead job: the root cause, its chain, the
    attempt ``timeline``, where it died and the payload (redacted when stored)."""
    root = classification.root_cause if classification else None
    failures = [a["finished_at"] for a in timeline if a.get("finished_at")]
    first_failure = message.options.get(OPTION_FIRST_FAILURE) or (
        min(failures) if failures else dead_at
    )
    return DeadLetterRecord.create(
        job_id=message.message_id,
        queue=message.queue_name,
        actor=message.actor_name,
        category=decision.category,
        rule=classification.rule if classification else None,
        reason=decision.reason,
        error_type=type_name(root) if root else "",
        error_message=error_message(root) if root else decision.reason,
        traceback=traceback_text(exception),
        chain_types=list(classification.chain_types) if classification else [],
        attempts=timeline,
        first_failure_at=int(first_failure),
        last_failure_at=dead_at,
        dead_at=dead_at,
        worker_host=socket.gethostname(),
        worker_pid=os.getpid(),
        payload=message._message.asdict(),
    )
