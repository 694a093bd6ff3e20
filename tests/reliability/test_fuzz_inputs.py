"""Hypothesis throws malformed input at every edge evalq reads from: request JSON, raw broker
messages, policy files and settings. Each is either accepted or refused with a sentence that
names where the problem is; nothing raises anything else."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from dramatiq import Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import workers
from config.policy import Policy, PolicyError, parse_policy
from config.settings import Settings, SettingsError, describe_error, read_settings
from middleware.core.message_shape import decode_problem, fields_problem
from middleware.state.consumer import GuardedConsumer
from tests.reliability.chaos import scaled
from tests.support.policy import SHIPPED_POLICY
from tests.support.requests import llm_request, rule_request
from workers import actors
from workers.requests_file import read_requests

pytestmark = pytest.mark.reliability

EXAMPLES = scaled(60, 1500)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# --- JSON values and mutations of good documents ------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``document``."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def mutate(document: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    """``document`` with the value at ``path`` replaced, deleted or given a new sibling key."""
    if not path:
        return value if action == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"extra_{last}"] = value
    return document


@st.composite
def mutated(draw: st.DrawFn, good: Any) -> Any:
    """A good document with one to three random mutations."""
    document = json.loads(json.dumps(good))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(document)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        document = mutate(document, path, action, draw(json_values))
    return document


def good_requests() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(
        [rule_request(), llm_request(), llm_request("rating", min_rating=1, max_rating=5)]
    )


request_lines = st.one_of(
    good_requests().map(json.dumps),
    good_requests().flatmap(mutated).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60).filter(lambda line: "\n" not in line and "\r" not in line),
)


@FUZZ
@given(lines=st.lists(request_lines, min_size=1, max_size=5))
def test_request_files_are_accepted_or_refused_line_by_line_naming_the_field(
    lines: list[str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        requests, errors = read_requests(path)
    for _ in requests:
        event("request line: accepted")
    for error in errors:
        event(f"request line: refused ({error.message.split(':')[0][:24]})")
    texts = path.name
    numbered = {n for n, line in enumerate(lines, start=1) if line.strip()}
    assert {n for n, _ in requests} | {e.line for e in errors} <= numbered | {0}
    for error in errors:
        rendered = str(error)
        assert rendered.startswith(f"{error.path}:{error.line}: "), rendered
        assert error.message and "Traceback" not in error.message
        assert "\n" not in error.message
        decoded = _json_or_none(lines[error.line - 1]) if error.line else None
        if isinstance(decoded, dict) and not error.message.startswith("not valid JSON"):
            # A JSON object that does not validate: the problem is named by its field path.
            for part in error.message.split("; "):
                field, _, problem = part.partition(": ")
                assert (field and problem) or part.startswith("Input should"), error.message
    assert texts


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


# --- raw broker messages ----------------------------------------------------------------------


def good_message() -> dict[str, Any]:
    message = actors.run_batch_evaluation.message(rule_request())
    fields = message.asdict()
    fields["options"] = {"redis_message_id": "0f8c7d6e-0000-4000-8000-000000000000"}
    return fields


def as_bytes(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", errors="surrogatepass")


raw_messages = st.one_of(
    st.just(good_message()).flatmap(mutated).map(as_bytes),
    json_values.map(as_bytes),
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 200_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.just(good_message())
    .map(as_bytes)
    .flatmap(lambda data: st.integers(0, len(data) - 1).map(lambda cut: data[:cut])),
)


def consumer(queue: str = "evaluations.batch") -> GuardedConsumer:
    """The guarded consumer's screen, without a connection: only its checks are used."""
    screen = object.__new__(GuardedConsumer)
    screen.broker = workers.broker  # type: ignore[assignment]
    screen.queue_name = queue
    return screen


@FUZZ
@given(data=raw_messages)
def test_every_raw_broker_message_is_screened_with_a_sentence_and_never_raises(
    data: bytes,
) -> None:
    problem, fields = consumer()._screen(data)
    event(
        "broker message: runs"
        if problem is None
        else f"broker message: dead-lettered ({' '.join(problem.split()[:3])})"
    )
    if problem is None:
        # What the screen lets through, Dramatiq decodes and the actor's arguments fit.
        message = Message.decode(data)
        assert message.queue_name == "evaluations.batch"
        assert fields is not None
    else:
        assert isinstance(problem, str) and problem and "\n" not in problem
        assert problem[0].islower() or problem[0] in "'\""
    for checked in (fields_problem(fields), decode_problem(ValueError("x"))):
        assert checked is None or isinstance(checked, str)


# --- policy files -----------------------------------------------------------------------------

POLICY_KEYS = {
    "defaults": ["max_attempts", "min_backoff_ms", "max_backoff_ms", "jitter"],
    "category": [
        "action",
        "max_retries",
        "min_backoff_ms",
        "max_backoff_ms",
        "honor_retry_after",
        "report",
        "max_attempts",
        "jitter",
        "max_retry",
    ],
    "rule": ["category", "message", "exception", "status", "code", "type", "name", "colour"],
}
CATEGORIES = ["rate_limited", "provider_unavailable", "unknown", "crashed", "timeot", "x y"]
toml_scalars = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.text(max_size=20)
    | st.sampled_from(["retry", "dead_letter", "drop", "(?i)unclosed[", "openai.APIError"])
)
toml_values = toml_scalars | st.lists(
    st.integers(0, 700) | st.text(max_size=10) | st.sampled_from(["openai.APIConnectionError"]),
    max_size=3,
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (an escaped surrogate fails to parse)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


@st.composite
def policy_texts(draw: st.DrawFn) -> str:
    """A policy file: the shipped one or an empty one, plus fuzzed tables, rules and lines."""
    parts = [SHIPPED_POLICY.read_text() if draw(st.booleans()) else "version = 1\n"]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["defaults", "category", "rule", "override", "line"]))
        keys = POLICY_KEYS["category" if kind == "override" else kind] if kind != "line" else []
        body = (
            "".join(
                f"{draw(st.sampled_from(keys))} = {toml_value(draw(toml_values))}\n"
                for _ in range(draw(st.integers(0, 3)))
            )
            if keys
            else ""
        )
        if kind == "defaults":
            parts.append(f"[environments.test.defaults]\n{body}")
        elif kind == "category":
            parts.append(f'[categories."{draw(st.sampled_from(CATEGORIES))}"]\n{body}')
        elif kind == "rule":
            parts.append(f"[[rules]]\n{body}")
        elif kind == "override":
            scope = draw(
                st.sampled_from(
                    [
                        'queues."evaluations.live"',
                        "actors.run_x",
                        "environments.staging",
                        "environments.test",
                    ]
                )
            )
            parts.append(f'[{scope}.categories."{draw(st.sampled_from(CATEGORIES))}"]\n{body}')
        else:
            parts.append(draw(st.text(max_size=40)) + "\n")
    return "\n".join(parts)


@FUZZ
@given(text=policy_texts())
def test_policy_files_parse_to_a_policy_or_a_policy_error_naming_file_and_key(text: str) -> None:
    try:
        policy = parse_policy(text, source="fuzz.toml")
    except PolicyError as error:
        event("policy file: PolicyError")
        assert error.problems
        for problem in error.problems:
            assert problem.startswith("fuzz.toml: "), problem
            assert len(problem) > len("fuzz.toml: ")
        return
    assert isinstance(policy, Policy)
    event("policy file: accepted")
    resolved = policy.resolve("unknown", actor="run_x", queue="evaluations.live", env="test")
    assert resolved.max_attempts >= 1


# --- settings ---------------------------------------------------------------------------------

VARIABLES = [
    "EVALQ_REDIS_URL",
    "EVALQ_ENV",
    "EVALQ_POLICY_FILE",
    "EVALQ_PROVIDER_BASE_URL",
    "EVALQ_PROVIDER_API_KEY",
    "EVALQ_PROVIDER_TIMEOUT_S",
    "SENTRY_DSN",
    "EVALQ_SENTRY_DSN",
    "EVALQ_DEDUP_MODE",
    "EVALQ_DEDUP_WINDOW_S",
    "EVALQ_LIVE_PROCESSES",
    "EVALQ_BATCH_THREADS",
    "EVALQ_TIME_LIMIT_S",
    "EVALQ_TIME_LIMITS",
    "EVALQ_PROVIDER_LIMITS",
    "EVALQ_HEARTBEAT_TIMEOUT_MS",
    "EVALQ_REDELIVERY_INTERVAL_MS",
    "EVALQ_MAINTENANCE_CHANCE",
    "EVALQ_DLQ_MAX_RECORDS",
    "EVALQ_JOB_TTL_S",
    "EVALQ_LIVE_MAX_AGE_S",
    "EVALQ_SENTRY_ATTACH_PAYLOAD",
    "EVALQ_DASHBOARD_TOKEN",
]
SECRET_VARIABLES = {
    "EVALQ_PROVIDER_API_KEY",
    "SENTRY_DSN",
    "EVALQ_SENTRY_DSN",
    "EVALQ_DASHBOARD_TOKEN",
}
env_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
) | st.sampled_from(
    [
        "0",
        "-1",
        "1e309",
        "nan",
        "true",
        "{}",
        '{"a": {"b": -1}}',
        "[1]",
        "redis://h:1/0",
        "rediss://:pw@h/0",
        "ftp://x",
        "http://k@127.0.0.1/1",
        "window",
        "production",
        "  ",
    ]
)


#: Variables read as JSON: they get JSON here, and invalid JSON has a test of its own below.
JSON_VARIABLES = {"EVALQ_TIME_LIMITS", "EVALQ_PROVIDER_LIMITS"}


@FUZZ
@given(
    env=st.dictionaries(st.sampled_from(VARIABLES), env_text, min_size=1, max_size=5),
    json_env=st.dictionaries(
        st.sampled_from(sorted(JSON_VARIABLES)), json_values.map(json.dumps), max_size=2
    ),
)
def test_settings_load_or_fail_with_one_line_naming_the_variable(
    env: dict[str, str], json_env: dict[str, str]
) -> None:
    env = {**{k: v for k, v in env.items() if k not in JSON_VARIABLES}, **json_env}
    with mock.patch.dict(os.environ, env, clear=True):
        try:
            loaded = Settings()
        except ValidationError as error:
            described = describe_error(error)
            event("settings: refused, one line")
            assert "\n" not in described
            assert re.match(r"(EVALQ_[A-Z_]+|SENTRY_DSN): \S", described), described
            for item in error.errors():
                field = str(item["loc"][0]) if item["loc"] else ""
                assert field.upper() in described, described
            for name in SECRET_VARIABLES & set(env):
                if len(env[name].strip()) >= 12:
                    assert env[name] not in described, "a secret was echoed in the error"
            return
    assert isinstance(loaded, Settings)
    event("settings: accepted")
    for name in SECRET_VARIABLES & set(env):
        if len(env[name].strip()) >= 12:
            assert env[name] not in repr(loaded)


@pytest.mark.parametrize("variable", sorted(JSON_VARIABLES))
def test_invalid_json_in_a_json_setting_is_one_line_naming_the_variable(variable: str) -> None:
    with (
        mock.patch.dict(os.environ, {variable: "{not json"}, clear=True),
        pytest.raises(SettingsError) as refused,
    ):
        read_settings()
    described = refused.value.describe()
    assert variable in described
    assert "\n" not in described
