"""The one path from an exception to the text evalq stores and shows."""

from __future__ import annotations

from config.policy import load_policy
from config.settings import DEFAULT_POLICY_FILE
from middleware.core.classify import classify
from middleware.core.failure_text import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    error_message,
    traceback_text,
    type_name,
)
from middleware.core.redaction import REDACTED, redact_text

KEY = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_a_type_has_one_spelling_in_the_text_and_in_the_chain_of_a_classification() -> None:
    error = raised(ValueError("bad"))
    classification = classify(error, load_policy(DEFAULT_POLICY_FILE), now=0.0)
    assert type_name(error) == classification.chain_types[0] == "builtins.ValueError"

    class JudgeError(Exception):
        pass

    assert type_name(raised(JudgeError())) == f"{__name__}.{JudgeError.__qualname__}"
    assert type_name(None) == ""


def test_a_message_is_redacted_and_capped_once_and_comes_out_safe_to_store() -> None:
    text = error_message(raised(RuntimeError(f"key {KEY} " + "x" * 5_000)))
    assert KEY not in text and REDACTED in text
    assert len(text) == MAX_ERROR_MESSAGE_CHARS and text.endswith("…")
    assert redact_text(text) == text  # nothing left for a later step to redact


def test_a_message_attribute_is_preferred_and_an_unprintable_exception_gets_a_placeholder() -> None:
    class Provider(Exception):
        message = "tools is not supported in this model"

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert error_message(Provider("Error code: 400 - {...}")) == Provider.message
    assert error_message(Unprintable()) == "<unprintable Unprintable>"


def test_a_long_traceback_keeps_its_end_and_says_how_much_was_cut() -> None:
    caught = raised(ValueError(f"the root cause, with {KEY}"))
    for n in range(40):  # a chain of wrappers, each with a long message, the root cause last
        wrapper = raised(RuntimeError(f"wrapper {n}: " + "x" * 400))
        wrapper.__context__ = caught
        caught = wrapper
    text = traceback_text(caught)
    assert text.startswith("[") and " characters cut]\n" in text
    assert text.rstrip().endswith("wrapper 39: " + "x" * 400)
    assert KEY not in text
    assert len(text.split("\n", 1)[1]) == MAX_TRACEBACK_CHARS
    assert traceback_text(raised(KeyError("k"))).count("characters cut") == 0


def _divide(values: dict[str, int]) -> float:
    return values["a"] / values["b"]  # a sub-expression fails: Python 3.11 would add carets


def test_a_traceback_keeps_every_frame_and_cause_but_no_caret_lines() -> None:
    try:
        try:
            _divide({"a": 1, "b": 0})
        except ZeroDivisionError as error:
            raise RuntimeError("judge step failed") from error
    except RuntimeError as wrapped:
        text = traceback_text(wrapped)
    assert 'return values["a"] / values["b"]' in text
    assert "ZeroDivisionError: division by zero" in text
    assert "The above exception was the direct cause" in text
    assert "RuntimeError: judge step failed" in text
    assert not [
        line for line in text.splitlines() if set(line.strip()) <= set("^~") and line.strip()
    ]
