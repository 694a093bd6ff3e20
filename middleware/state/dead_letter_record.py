"""A dead-letter record: what evalq keeps of a dead job, and how it is turned back into a job.

A record's id is the millisecond of death, zero-padded, then a random suffix, so ids sort by time.
A record is stored redacted and capped (``DeadLetterRecord.redacted``); a record whose payload
lost a secret to redaction cannot be redriven (``contains_redaction``).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import uuid
from typing import Any, Final

import dramatiq
from dramatiq.broker import MessageProxy
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from middleware.core.attempts import OPTION_FIRST_FAILURE
from middleware.core.classify import Classification
from middleware.core.decisions import Decision
from middleware.core.failure_text import (
    MAX_ERROR_MESSAGE_CHARS as MAX_ERROR_MESSAGE_CHARS,
)
from middleware.core.failure_text import (
    MAX_TRACEBACK_CHARS as MAX_TRACEBACK_CHARS,
)
from middleware.core.failure_text import (
    cap_message,
    cap_traceback,
    error_message,
    traceback_text,
    type_name,
)
from middleware.core.redaction import REDACTED, redact, redact_text

_ID_DIGITS = 15
#: A record id, as ``new_record_id`` makes them.
RECORD_ID_RE: Final = re.compile(r"\d{15}-[0-9a-f]{10}")


def new_record_id(dead_at_ms: int) -> str:
    """A record id: ``dead_at_ms`` zero-padded, then a random suffix; ids sort by time."""
    return f"{record_id_prefix(dead_at_ms)}-{secrets.token_hex(5)}"


def record_id_prefix(ms: int) -> str:
    """The time part of the ids of records dead at ``ms``: compare it with ids lexically."""
    if not 0 <= ms < 10**_ID_DIGITS:
        raise ValueError(f"timestamp {ms} is out of range: give milliseconds since the epoch")
    return f"{ms:0{_ID_DIGITS}d}"


class DeadLetterRecord(BaseModel):
    """Everything an operator needs to decide about a dead job. Times in ms since the epoch."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: str = Field(pattern=RECORD_ID_RE.pattern)
    job_id: str
    queue: str
    actor: str
    category: str
    rule: str | None = None
    #: Why the policy dead-lettered the job, in words.
    reason: str | None = None
    error_type: str
    error_message: str
    traceback: str = ""
    chain_types: list[str] = Field(default_factory=list)
    #: Attempt timeline: ``{"n","started_at","finished_at","outcome","category","error_type",
    #: "error_message","rule","worker","sentry_event_id"}`` each (the last three may be
    #: missing from records written before evalq kept them).
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    first_failure_at: int
    last_failure_at: int
    dead_at: int
    worker_host: str
    worker_pid: int
    #: The Dramatiq message as a dict (``Message.asdict()``), secrets redacted when stored.
    payload: dict[str, Any]
    #: The Sentry event the job's failure was reported as (the latest one), if any was sent.
    sentry_event_id: str | None = None

    #: Whether every field was built redacted and capped (by ``dead_letter_record``) already.
    _safe: bool = PrivateAttr(default=False)

    @classmethod
    def create(cls, *, dead_at: int, **fields: Any) -> DeadLetterRecord:
        """A new record with a fresh id for ``dead_at``; the other fields as keywords."""
        return cls(id=new_record_id(dead_at), dead_at=dead_at, **fields)

    def summary(self) -> dict[str, Any]:
        """The record as one row of a listing: the ``evalq dlq list --json`` shape."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "queue": self.queue,
            "actor": self.actor,
            "category": self.category,
            "rule": self.rule,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": len(self.attempts),
            "dead_at": self.dead_at,
        }

    def redacted(self) -> DeadLetterRecord:
        """This record as it is stored: secrets redacted, message and traceback capped.

        The store's own guarantee, for records from anywhere (``add_many`` takes records built
        by other code): text from ``failure_text`` is safe already and comes out unchanged. A
        record ``dead_letter_record`` built is returned as it is: it was built that way.
        """
        if self._safe:
            return self
        return self.model_copy(
            update={
                "error_message": cap_message(redact_text(self.error_message)),
                "traceback": cap_traceback(redact_text(self.traceback)),
                "attempts": [
                    {**a, "error_message": cap_message(redact_text(a["error_message"]))}
                    if isinstance(a.get("error_message"), str)
                    else a
                    for a in self.attempts
                ],
                "payload": redact(self.payload),
            }
        )


def contains_redaction(value: Any) -> bool:
    """Whether redaction replaced anything in ``value`` (a payload, or any part of one)."""
    if isinstance(value, dict):
        return any(contains_redaction(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_redaction(v) for v in value)
    return isinstance(value, str) and REDACTED in value


def payload_from_message(message: dramatiq.Message[Any]) -> dict[str, Any]:
    """A Dramatiq message as a record's ``payload`` (before redaction)."""
    payload = message.asdict()
    payload["args"] = list(payload["args"])
    payload["options"] = dict(payload["options"])
    return payload


def redrive_refusal(
    record: DeadLetterRecord, *, queue: str | None, category: str | None, dry_run: bool
) -> str | None:
    """Why ``record`` is not redriven (filtered to ``queue`` and ``category``, None: any), or
    None when it is."""
    if queue is not None and record.queue != queue:
        return f"not on queue {queue}"
    if category is not None and record.category != category:
        return f"not in category {category}"
    if "actor_name" not in record.payload:
        return "not a Dramatiq message (it could not be decoded): nothing to redrive"
    if contains_redaction(record.payload):
        return "payload has redacted secrets; enqueue the job again from its source"
    if dry_run:
        return "dry run"
    return None


def redrive_message(
    record: DeadLetterRecord, queue: str, *, now_ms: int, attempt_base: int = 0
) -> tuple[str, bytes]:
    """The Redis message id and encoded Dramatiq message that redrive ``record`` on ``queue``.

    Options of the old delivery (``eta``, ``redis_message_id``) and evalq's own (``evalq_*``:
    budgets, counters) are dropped, so the job gets fresh budgets; ``evalq_attempt_base`` is the
    number of attempts it already had (its budgets count from there, its timeline goes on) and
    ``evalq_redriven`` counts the redrives.
    """
    payload = record.payload
    old_options: dict[str, Any] = payload.get("options") or {}
    options = {
        name: value
        for name, value in old_options.items()
        if name not in ("eta", "redis_message_id") and not name.startswith("evalq_")
    }
    redis_message_id = str(uuid.uuid4())
    options["evalq_redriven"] = int(old_options.get("evalq_redriven") or 0) + 1
    options["evalq_attempt_base"] = attempt_base
    options["redis_message_id"] = redis_message_id
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue,
        actor_name=payload.get("actor_name") or record.actor,
        args=tuple(payload.get("args") or ()),
        kwargs=dict(payload.get("kwargs") or {}),
        options=options,
        message_id=payload.get("message_id") or record.job_id,
        message_timestamp=now_ms,
    )
    return redis_message_id, message.encode()


def dead_letter_record(
    message: MessageProxy,
    *,
    classification: Classification | None,
    decision: Decision,
    exception: BaseException | None,
    timeline: list[dict[str, Any]],
    dead_at: int,
    sentry_event_id: str | None = None,
) -> DeadLetterRecord:
    """The record an operator reads to decide about a dead job: the root cause, its chain, the
    attempt ``timeline``, where it died, the payload (redacted when stored) and the Sentry event
    of its failure: ``sentry_event_id`` (sent for the last attempt), else the latest one an
    earlier attempt of the timeline was reported as."""
    root = classification.root_cause if classification else None
    # Without a root cause (a job refused before it ran) the reason may quote the message.
    reason = decision.reason if root else cap_message(redact_text(decision.reason))
    failures = [a["finished_at"] for a in timeline if a.get("finished_at")]
    first_failure = message.options.get(OPTION_FIRST_FAILURE) or (
        min(failures) if failures else dead_at
    )
    record = DeadLetterRecord.create(
        job_id=message.message_id,
        queue=message.queue_name,
        actor=message.actor_name,
        category=decision.category,
        rule=classification.rule if classification else None,
        reason=reason,
        error_type=type_name(root) if root else "",
        error_message=error_message(root) if root else reason,
        traceback=traceback_text(exception),
        chain_types=list(classification.chain_types) if classification else [],
        attempts=timeline,
        first_failure_at=int(first_failure),
        last_failure_at=dead_at,
        dead_at=dead_at,
        worker_host=socket.gethostname(),
        worker_pid=os.getpid(),
        payload=redact(message._message.asdict()),
        sentry_event_id=sentry_event_id or latest_event_id(timeline),
    )
    # Its text came from failure_text or the timeline (both redacted and capped where they
    # were made) and its payload is redacted above: the store need not redact it again.
    record._safe = True
    return record


def latest_event_id(timeline: list[dict[str, Any]]) -> str | None:
    """The Sentry event id of the latest attempt in ``timeline`` that was reported, if any."""
    reported = [a["sentry_event_id"] for a in timeline if a.get("sentry_event_id")]
    return str(reported[-1]) if reported else None
