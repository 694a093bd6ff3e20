"""A user's policy file layered over the shipped one: rules first, tables field by field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import openai
import pytest

from config.policy import CATEGORIES, load_policy
from config.policy_loader import SHIPPED_POLICY_FILE
from middleware.core.classify import classify
from middleware.core.errors import InvalidPayload, JobAborted, JobExpired
from workers.evaluations.llm_judge import JudgeOutputError

WHERE = {"actor": "some_actor", "queue": "default", "env": "production"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def status_error(status: int, message: str = "error") -> openai.APIStatusError:
    import httpx2 as httpx

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, request=request, json={"error": {"message": message}})
    return openai.APIStatusError(message, response=response, body={"message": message})


def test_a_file_tuning_one_value_keeps_every_shipped_rule_and_budget(tmp_path: Path) -> None:
    shipped = load_policy(SHIPPED_POLICY_FILE)
    mine = load_policy(write(tmp_path, "version = 1\n[categories.rate_limited]\nmax_retries = 3\n"))
    assert mine.resolve("rate_limited", **WHERE).max_retries == 3
    assert mine.resolve("rate_limited", **WHERE).honor_retry_after is True  # shipped field kept
    for category in CATEGORIES:
        if category != "rate_limited":
            assert mine.resolve(category, **WHERE) == shipped.resolve(category, **WHERE)
    assert [r.name for r in mine.rules] == [r.name for r in shipped.rules]
    error = status_error(400, "tools is not supported in this model")
    assert classify(error, mine, now=0).category == "model_capability"


def test_user_rules_are_tried_before_the_shipped_ones(tmp_path: Path) -> None:
    mine = load_policy(
        write(
            tmp_path,
            """\
            version = 1
            [[rules]]
            category = "quota_exhausted"
            status = [429]
            """,
        )
    )
    found = classify(status_error(429), mine, now=0)
    assert (found.category, found.rule) == ("quota_exhausted", "rules[0]")
    assert mine.rules[0].layer == str(tmp_path / "mine.toml")
    assert mine.rules[1].layer == "shipped"


def test_a_user_rule_named_like_a_shipped_rule_replaces_it(tmp_path: Path) -> None:
    mine = load_policy(
        write(
            tmp_path,
            """\
            version = 1
            [[rules]]
            name = "rate_limited_429"
            category = "provider_unavailable"
            status = [429]
            """,
        )
    )
    assert [r.name for r in mine.rules].count("rate_limited_429") == 1
    assert classify(status_error(429), mine, now=0).category == "provider_unavailable"


def test_override_tables_merge_field_by_field_with_the_shipped_ones(tmp_path: Path) -> None:
    mine = load_policy(
        write(tmp_path, 'version = 1\n[queues."evaluations.live".defaults]\nmin_backoff_ms = 7\n')
    )
    live = {**WHERE, "queue": "evaluations.live", "actor": "a"}
    assert mine.resolve("unknown", **live).max_attempts == 4  # shipped queue table kept
    assert mine.resolve("auth", **live).min_backoff_ms == 7  # the user's field


def test_check_says_where_each_value_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 1\n[categories.rate_limited]\nmax_retries = 3\n")
    origins = load_policy(path).origins_of("rate_limited", **WHERE)
    assert origins["max_retries"] == f"{path}:categories.rate_limited.max_retries"
    assert origins["min_backoff_ms"] == "shipped"
    assert origins["max_attempts"] == "shipped"
    assert (
        load_policy(path).origins_of("unknown", actor="a", queue="q", env="development")[
            "max_retries"
        ]
        == "shipped"
    )


def test_extends_none_drops_the_shipped_layer(tmp_path: Path) -> None:
    mine = load_policy(write(tmp_path, 'version = 1\nextends = "none"\n'))
    assert mine.rules == ()
    assert classify(status_error(429), mine, now=0).category == "unknown"
    assert mine.resolve("rate_limited", **WHERE).action == "dead_letter"


@pytest.mark.parametrize(
    ("make", "category"),
    [
        (lambda: JudgeOutputError("not JSON", "{"), "invalid_model_output"),
        (lambda: _time_limit(), "time_limit"),
        (lambda: JobAborted("stop"), "aborted"),
        (lambda: InvalidPayload("bad"), "invalid_payload"),
        (lambda: JobExpired("old"), "expired"),
    ],
)
def test_evalqs_own_failures_keep_their_category_whatever_the_file_says(
    tmp_path: Path, make: object, category: str
) -> None:
    hostile = load_policy(
        write(
            tmp_path,
            """\
            version = 1
            extends = "none"
            [[rules]]
            category = "unknown"
            exception = ["BaseException"]
            """,
        )
    )
    assert classify(make(), hostile, now=0).category == category  # type: ignore[operator]


def _time_limit() -> BaseException:
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    try:
        try:
            raise JudgeOutputError("half an answer")
        except JudgeOutputError:
            raise TimeLimitExceeded() from None
    except TimeLimitExceeded as interrupted:
        return interrupted
