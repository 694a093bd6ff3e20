from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from config.settings import Settings, SettingsError, describe_error, read_settings


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EVALQ_REDIS_URL", "EVALQ_ENV", "SENTRY_DSN", "EVALQ_SENTRY_DSN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.redis_url is None
    assert settings.env == "development"
    assert settings.sentry_dsn is None


def test_sentry_dsn_is_read_from_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALQ_SENTRY_DSN", "http://public@127.0.0.1:9/1")
    assert Settings().sentry_dsn is not None
    monkeypatch.delenv("EVALQ_SENTRY_DSN")
    monkeypatch.setenv("SENTRY_DSN", "http://public@127.0.0.1:9/2")
    dsn = Settings().sentry_dsn
    assert dsn is not None and dsn.get_secret_value().endswith("/2")


def test_secrets_never_appear_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALQ_PROVIDER_API_KEY", "sk-very-secret")
    monkeypatch.setenv("EVALQ_DASHBOARD_TOKEN", "token-very-secret")
    monkeypatch.setenv("SENTRY_DSN", "http://dsn-secret@127.0.0.1:9/1")
    text = repr(Settings()) + str(Settings().model_dump())
    assert "sk-very-secret" not in text
    assert "token-very-secret" not in text
    assert "dsn-secret" not in text


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "EVALQ_PROVIDER_TIMEOUT_S",
            "soon",
            "EVALQ_PROVIDER_TIMEOUT_S: Input should be a valid number",
        ),
        (
            "EVALQ_PROVIDER_TIMEOUT_S",
            "-1",
            "EVALQ_PROVIDER_TIMEOUT_S: Input should be greater than 0",
        ),
        (
            "EVALQ_ENV",
            "staging",
            "EVALQ_ENV: Input should be 'development', 'test' or 'production'",
        ),
        (
            "EVALQ_REDIS_URL",
            "localhost:6379",
            "EVALQ_REDIS_URL: Value error, must start with redis://",
        ),
        (
            "EVALQ_PROVIDER_BASE_URL",
            "api.example",
            "EVALQ_PROVIDER_BASE_URL: Value error, must start",
        ),
    ],
)
def test_a_bad_value_is_described_by_its_variable_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_error(caught.value).startswith(expected)


def test_importing_evalq_with_bad_settings_neither_exits_nor_prints() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "import workers, workers.client, workers.cli, middleware.sentry"],
        env={
            "EVALQ_PROVIDER_TIMEOUT_S": "soon",
            "SENTRY_DSN": "not-a-dsn",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "", "")


def test_bad_settings_raise_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALQ_PROVIDER_TIMEOUT_S", "soon")
    with pytest.raises(SettingsError) as caught:
        read_settings()
    assert caught.value.describe() == (
        "invalid settings: EVALQ_PROVIDER_TIMEOUT_S: Input should be a valid number, "
        "unable to parse string as a number"
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EVALQ_TIME_LIMITS", "{run_live_evaluation: 60}", "EVALQ_TIME_LIMITS: not valid JSON ("),
        ("EVALQ_PROVIDER_LIMITS", "[1,", "EVALQ_PROVIDER_LIMITS: not valid JSON ("),
        (
            "EVALQ_PROVIDER_LIMITS",
            '{"openai": {"max_concurency": 2}}',
            "EVALQ_PROVIDER_LIMITS: Value error, openai: unknown key(s) ['max_concurency']",
        ),
        (
            "EVALQ_TIME_LIMITS",
            '{"run_live_evaluation": "soon"}',
            "EVALQ_TIME_LIMITS: Input should be a valid number",
        ),
    ],
)
def test_a_bad_json_valued_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        read_settings()
    line = caught.value.describe()
    assert line.startswith(f"invalid settings: {expected}")
    assert "\n" not in line


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            {"EVALQ_DEDUP_MODE": "window"},
            "EVALQ_DEDUP_WINDOW_S: Value error, EVALQ_DEDUP_MODE=window needs a window",
        ),
        (
            {"EVALQ_DEDUP_MODE": "until_done"},
            "EVALQ_DEDUP_MODE: Input should be 'until_finished', 'until_started' or 'window'",
        ),
        (
            {"EVALQ_DEDUP_MODE": "window", "EVALQ_DEDUP_WINDOW_S": "0"},
            "EVALQ_DEDUP_WINDOW_S: Input should be greater than 0",
        ),
        (
            {"EVALQ_DEDUP_WINDOW_S": "7200", "EVALQ_JOB_TTL_S": "3600"},
            "EVALQ_DEDUP_WINDOW_S: Value error, cannot be longer than EVALQ_JOB_TTL_S (3600 s)",
        ),
    ],
)
def test_dedup_settings_that_do_not_fit_together_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_error(caught.value).startswith(expected)


def test_dedup_defaults_to_until_finished_and_a_window_mode_reads_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (Settings().dedup_mode, Settings().dedup_window_s) == ("until_finished", None)
    monkeypatch.setenv("EVALQ_DEDUP_MODE", "window")
    monkeypatch.setenv("EVALQ_DEDUP_WINDOW_S", "90")
    assert (Settings().dedup_mode, Settings().dedup_window_s) == ("window", 90.0)
