"""Naming what is wrong with a broker message: pure, one sentence each, never raising."""

from __future__ import annotations

import inspect
import json

import pytest

from middleware.core.message_shape import (
    RAW_EXCERPT_CHARS,
    decode_problem,
    delivery_problem,
    fields_problem,
    raw_excerpt,
)


def count_run(tag: str) -> None:
    """An actor function with one argument."""


def check(**changes: object) -> str | None:
    fields: dict[str, object] = {
        "queue_name": "default",
        "actor_name": "count_run",
        "args": ["t"],
        "kwargs": {},
        "options": {},
        "consumed_queue": "default",
        "actors": {"count_run": object()},
        "signature_of": lambda name: inspect.signature(count_run),
    }
    fields.update(changes)
    return delivery_problem(**fields)  # type: ignore[arg-type]


def test_a_well_formed_delivery_has_no_problem() -> None:
    assert check() is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"queue_name": "other"}, "names queue 'other' but was delivered on 'default'"),
        ({"actor_name": "gone"}, "names actor 'gone', which no module of this worker declares"),
        ({"options": []}, "options is a list, not an object"),
        ({"kwargs": [1]}, "kwargs is a list, not an object"),
        ({"args": []}, "arguments do not fit count_run: missing a required argument: 'tag'"),
        ({"args": ["a", "b"]}, "arguments do not fit count_run: too many positional arguments"),
    ],
)
def test_a_delivery_that_cannot_run_is_named(changes: dict[str, object], problem: str) -> None:
    assert check(**changes) == problem


def test_an_actor_whose_signature_is_unknown_is_not_checked_for_arguments() -> None:
    assert check(args=[], signature_of=lambda name: None) is None


FIELDS = {"queue_name": "q", "actor_name": "a", "args": [], "kwargs": {}, "options": {},
          "message_id": "m"}  # fmt: skip


def test_a_message_with_exactly_dramatiqs_fields_has_no_problem() -> None:
    assert fields_problem(FIELDS) is None
    assert fields_problem({**FIELDS, "message_timestamp": 1}) is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ([1], "not a Dramatiq message (a JSON list, not an object)"),
        (
            {"queue_name": "q"},
            "not a Dramatiq message (no actor_name, args, kwargs, options, message_id)",
        ),
        ({**FIELDS, "queue_name": 1}, "queue_name is a int, not a string"),
        ({**FIELDS, "message_timestamp": True}, "message_timestamp is a bool, not an integer"),
        # Dramatiq's Message.decode fails on these; found by tests/reliability's fuzz.
        ({**FIELDS, "extra": None}, "not a Dramatiq message (unknown field 'extra')"),
        (
            {key: value for key, value in FIELDS.items() if key != "args"},
            "not a Dramatiq message (no args)",
        ),
    ],
)
def test_json_that_is_not_a_message_is_named(fields: object, problem: str) -> None:
    assert fields_problem(fields) == problem


def test_decode_failures_say_where() -> None:
    try:
        b"ab\xffc".decode("utf-8")
    except UnicodeDecodeError as error:
        assert decode_problem(error) == "not valid UTF-8 at byte 2"
    try:
        json.loads('{"a": }')
    except json.JSONDecodeError as error:
        assert decode_problem(error).startswith("not valid JSON: Expecting value at line 1")
    assert decode_problem(RecursionError()) == "nested too deeply to decode"


def test_a_raw_excerpt_is_capped_and_shows_undecodable_bytes() -> None:
    assert raw_excerpt(b"ok\xff") == "ok\\xff"
    long = raw_excerpt(b"x" * (RAW_EXCERPT_CHARS + 10))
    assert long.endswith(f"… [{RAW_EXCERPT_CHARS + 10} bytes in all]")
