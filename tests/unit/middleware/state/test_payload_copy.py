"""The payload copy a finished job's record keeps: redacted before it is capped, never holding a
secret or half of one, and read back as what it is (the whole message or an excerpt)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from middleware.core.redaction import REDACTED
from middleware.state.payload_copy import payload_copy, read_payload_copy

SECRET = "sk-live-0123456789abcdefghij"


def message(**kwargs: object) -> dict[str, object]:
    return {
        "queue_name": "default",
        "actor_name": "judge",
        "args": [],
        "kwargs": kwargs,
        "options": {"redis_message_id": "d-1"},
        "message_id": "job-1",
        "message_timestamp": 1_700_000_000_000,
    }


def test_a_payload_that_fits_is_kept_whole_with_its_secrets_redacted() -> None:
    kept = payload_copy(message(text="hello", api_key="k-1", note=SECRET), limit_bytes=4096)

    assert kept is not None and SECRET not in kept and "k-1" not in kept
    payload, source = read_payload_copy(kept)
    assert source == "history"
    assert payload is not None and payload["kwargs"] == {
        "text": "hello", "api_key": REDACTED, "note": REDACTED,
    }  # fmt: skip


def test_a_payload_over_the_limit_keeps_an_excerpt_of_that_many_bytes_and_its_size() -> None:
    whole = message(text="é" * 5000)
    size = len(json.dumps(whole, ensure_ascii=False, separators=(",", ":")).encode())

    kept = payload_copy(whole, limit_bytes=1001)

    payload, source = read_payload_copy(kept)
    assert source == "history_excerpt" and payload is not None
    assert payload["size_bytes"] == size
    # Cut on a character boundary: 1001 bytes hold 1000 of them at most, never half an "é".
    assert 990 <= len(payload["excerpt"].encode()) <= 1001
    assert payload["excerpt"].startswith('{"queue_name":"default"')


def test_redaction_comes_before_the_cap_so_no_part_of_a_secret_is_kept() -> None:
    # A cut through the secret would leave a prefix redaction no longer recognises.
    for limit in range(60, 260, 7):
        kept = payload_copy(message(note="x" * 40 + " " + SECRET), limit_bytes=limit)
        assert kept is not None and "sk-live" not in kept and "0123456789" not in kept


def test_a_limit_of_zero_keeps_nothing() -> None:
    assert payload_copy(message(text="hello"), limit_bytes=0) is None


def test_something_that_is_not_a_copy_reads_as_none() -> None:
    for raw in (None, "", "not json", "[1, 2]", '{"other": 1}', '{"message": "text"}'):
        assert read_payload_copy(raw) == (None, None)


@given(st.text(max_size=300), st.integers(min_value=1, max_value=400))
def test_any_text_round_trips_as_the_message_or_an_excerpt_within_the_limit(
    text: str, limit: int
) -> None:
    kept = payload_copy(message(text=text), limit_bytes=limit)
    payload, source = read_payload_copy(kept)
    assert payload is not None
    if source == "history":
        assert len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()) <= limit
    else:
        assert source == "history_excerpt" and len(payload["excerpt"].encode()) <= limit
