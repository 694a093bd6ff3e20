"""Process settings, read once from the environment at the edge (CLI, bootstrap, dashboard)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The URL a bare ``dramatiq workers`` process uses when ``EVALQ_REDIS_URL`` is unset.
DEFAULT_WORKER_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Where the shipped policy file lives.
DEFAULT_POLICY_FILE = Path(__file__).with_name("policies.toml")

Environment = Literal["development", "test", "production"]


class Settings(BaseSettings):
    """Everything an evalq process reads from its environment (prefix ``EVALQ_``).

    Secrets (the provider API key, the Sentry DSN, the dashboard token) are ``SecretStr``: they
    never appear in a repr, a log line or an error message.
    """

    model_config = SettingsConfigDict(
        env_prefix="EVALQ_",
        extra="ignore",
        validate_default=True,
        case_sensitive=False,
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis URL. Unset: `evalq` commands start an embedded Redis; a bare "
        "`dramatiq workers` uses redis://127.0.0.1:6379/0.",
    )
    env: Environment = Field(default="development", description="Deployment environment.")
    policy_file: Path = Field(default=DEFAULT_POLICY_FILE, description="Error-policy file (TOML).")
    provider_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="Base URL of the OpenAI-compatible provider the LLM judge calls.",
    )
    provider_api_key: SecretStr = Field(
        default=SecretStr(""), description="API key for the provider. Never logged."
    )
    provider_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="HTTP timeout of one provider request, in seconds."
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_DSN", "EVALQ_SENTRY_DSN"),
        description="Sentry DSN (`SENTRY_DSN` or `EVALQ_SENTRY_DSN`). Unset: Sentry is off.",
    )
    sentry_attach_payload: bool = Field(
        default=False,
        description="Attach the job's payload (secrets redacted) to Sentry events. Off by default: "
        "payloads hold user data.",
    )
    dashboard_token: SecretStr | None = Field(
        default=None, description="Bearer token the dashboard requires. Never logged."
    )
    result_ttl_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long results are kept in Redis, in seconds."
    )
    job_ttl_s: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long job states are kept in Redis, in seconds.",
    )
    heartbeat_timeout_ms: int = Field(
        default=60_000,
        ge=1000,
        description="A worker silent for this long is presumed dead and "
        "its unfinished jobs are redelivered, in milliseconds.",
    )
    maintenance_chance: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Broker commands out of a million that "
        "also look for dead workers' jobs to redeliver.",
    )
    dlq_max_records: int = Field(
        default=20_000,
        gt=0,
        description="Dead letters kept; older ones beyond it are evicted and counted as overflow.",
    )
    dlq_max_age_s: int = Field(
        default=14 * 24 * 3600, gt=0, description="How long dead letters are kept, in seconds."
    )
    export_dir: Path = Field(
        default=Path(".evalq/exports"), description="Where `export_results` writes JSONL files."
    )
    data_dir: Path = Field(
        default=Path(".evalq"), description="Where the embedded Redis keeps its files."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("provider_base_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def worker_redis_url(self) -> str:
        """The URL a worker process connects to: the configured one, else the local default."""
        return self.redis_url or DEFAULT_WORKER_REDIS_URL


def describe_error(error: ValidationError) -> str:
    """Render a settings validation error as one line per variable, naming the variable."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        variable = _variable_name(field)
        lines.append(f"{variable}: {item['msg']}")
    return "; ".join(lines)


def _variable_name(field: str) -> str:
    if field in ("sentry_dsn", "SENTRY_DSN", "EVALQ_SENTRY_DSN"):
        return "SENTRY_DSN"
    return f"EVALQ_{field.upper()}"


def load_settings() -> Settings:
    """Read settings from the environment, or stop the process with one line saying why."""
    try:
        return Settings()
    except ValidationError as error:
        print(f"evalq: invalid settings: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None
