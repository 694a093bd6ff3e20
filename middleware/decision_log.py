"""One log line per error-policy decision, at a level that fits it, instead of Dramatiq's own."""

from __future__ import annotations

import logging

from dramatiq.broker import MessageProxy

from middleware.core.classify import Classification
from middleware.core.decisions import Decision
from middleware.core.failure_text import error_message, traceback_text, type_name

logger = logging.getLogger("evalq.error_policy")


def log_decision(
    message: MessageProxy, attempt_n: int, classification: Classification, decision: Decision
) -> None:
    """A planned retry is INFO (WARNING when the error is unknown); a dead letter is WARNING, or
    ERROR with the traceback when nobody knows what went wrong."""
    root = classification.root_cause
    text = "job %s attempt %d (%s on %s): %s: %s -> %s%s [category=%s rule=%s] %s"
    delay = f" in {decision.delay_ms} ms" if decision.delay_ms is not None else ""
    args = (
        message.message_id, attempt_n, message.actor_name, message.queue_name,
        type_name(root), error_message(root)[:200], decision.action, delay,
        decision.category, classification.rule, decision.reason,
    )  # fmt: skip
    unknown = decision.category == "unknown"
    if decision.action == "retry":
        logger.log(logging.WARNING if unknown else logging.INFO, text, *args)
    elif unknown:
        # The traceback, redacted like the dead-letter record's (a raw exc_info could print
        # secrets from exception messages).
        logger.error(text + "\n%s", *args, traceback_text(root))
    else:
        logger.warning(text, *args)


def log_refusal(message: MessageProxy, reason: str) -> None:
    """A job dead-lettered without running (expired, aborted, crashed too often)."""
    logger.warning("job %s (%s on %s): not run: %s", message.message_id, message.actor_name,
                   message.queue_name, reason)  # fmt: skip


class _DropDramatiqFailureLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to process message")


def quiet_dramatiq_failure_logs() -> None:
    """Dramatiq logs every failed attempt at ERROR; evalq logs one decision line instead."""
    worker_logger = logging.getLogger("dramatiq.worker.WorkerThread")
    if not any(isinstance(f, _DropDramatiqFailureLogs) for f in worker_logger.filters):
        worker_logger.addFilter(_DropDramatiqFailureLogs())
