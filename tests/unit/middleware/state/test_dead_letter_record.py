"""A dead letter built from a failed job is redacted once, where it is built, exactly as the
store would redact it."""

from __future__ import annotations

import dramatiq
from dramatiq.broker import MessageProxy

from middleware.core.classify import Classification
from middleware.core.decisions import Decision
from middleware.core.redaction import REDACTED
from middleware.state.dead_letter_record import DeadLetterRecord, dead_letter_record

KEY = "sk-live-deadletter0123456789abcdef"


def _failed_job() -> tuple[MessageProxy, BaseException]:
    message = dramatiq.Message(
        queue_name="evaluations.batch", actor_name="run_batch_evaluation",
        args=({"evaluation": {"api_key": KEY, "prompt": f"use {KEY}"}},), kwargs={},
        options={"redis_message_id": "r-1"},
    )  # fmt: skip
    try:
        raise ValueError(f"provider refused key {KEY}")
    except ValueError as error:
        return MessageProxy(message), error


def test_a_built_dead_letter_holds_no_secret_and_is_what_the_store_would_make_of_it() -> None:
    proxy, error = _failed_job()
    record = dead_letter_record(
        proxy,
        classification=Classification(
            category="invalid_request",
            rule="rule-x",
            matched=error,
            root_cause=error,
            chain_types=("builtins.ValueError",),
            retry_after_s=None,
            forced_action=None,
        ),
        decision=Decision("dead_letter", "invalid_request", None, "invalid_request: no retry"),
        exception=error,
        timeline=[{"n": 1, "error_message": "refused [redacted]", "outcome": "dead_lettered"}],
        dead_at=1_764_590_000_000,
    )
    assert KEY not in record.model_dump_json()
    assert REDACTED in record.error_message and REDACTED in record.traceback
    # The store's redaction of it changes nothing, and is not even run.
    assert record.redacted() is record
    unmarked = DeadLetterRecord.model_validate(record.model_dump())
    assert unmarked.redacted().model_dump() == record.model_dump()


def test_a_refusal_reason_quoting_the_message_is_redacted() -> None:
    proxy, _ = _failed_job()
    record = dead_letter_record(
        proxy, classification=None,
        decision=Decision("dead_letter", "invalid_payload", None, f"bad option {KEY}"),
        exception=None, timeline=[], dead_at=1_764_590_000_000,
    )  # fmt: skip
    assert KEY not in record.model_dump_json()
