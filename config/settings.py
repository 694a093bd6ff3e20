"""Process settings, read once from the environment at the edge (CLI, bootstrap, dashboard)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from config.errors import ConfigurationError
from config.redis_url import (
    NODE_SCHEMES,
    SENTINEL_SCHEMES,
    compose_sentinel_url,
    is_sentinel_url,
    parse_sentinel_url,
    parse_sentinels,
)

#: Where the shipped policy file lives.
DEFAULT_POLICY_FILE = Path(__file__).with_name("policies.toml")

Environment = Literal["development", "test", "production"]
#: How a submission is deduplicated (``workers.deduplication``).
DedupMode = Literal["until_finished", "until_started", "window"]


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
        description="Redis URL. Unset: a running `evalq up` found from the working directory "
        "(or EVALQ_DATA_DIR), else an error; `evalq up` and `evalq demo` start an embedded one. "
        "A Sentinel set: redis+sentinel://[:password@]host:port[,host:port...]/master_name[/db] "
        "(rediss+sentinel:// for TLS to the data nodes).",
    )
    redis_sentinels: str | None = Field(
        default=None,
        description="Sentinels that say which node is the primary, as host:port,host:port (with "
        "EVALQ_REDIS_SENTINEL_MASTER). EVALQ_REDIS_URL, if also set, then only gives the data "
        "nodes' password, database and TLS; its host is not used.",
    )
    redis_sentinel_master: str | None = Field(
        default=None, description="The name the sentinels monitor the primary under."
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        description="Password of the sentinels themselves (the data nodes' is in EVALQ_REDIS_URL). "
        "Never logged.",
    )
    redis_sentinel_tls: bool = Field(
        default=False,
        description="Reach the sentinels over TLS, with the ssl_* options of EVALQ_REDIS_URL.",
    )
    redis_replica_wait_ms: int = Field(
        default=1000,
        ge=0,
        le=60_000,
        description="How long a submission or an actor's send() waits for a replica of the "
        "primary to acknowledge it, in milliseconds, so that a failover cannot lose the job "
        "(only while the primary has a replica online; 0: never wait).",
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
    dashboard_viewer_token: SecretStr | None = Field(
        default=None, description="Token of read-only dashboard viewers. Never logged."
    )
    dashboard_read_only: bool = Field(
        default=False, description="Disable every dashboard action, for everyone."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the dashboard's /metrics alone (dashboard tokens work too).",
    )
    dashboard_host: str = Field(
        default="127.0.0.1",
        description="Address the dashboard binds; beyond loopback it needs EVALQ_DASHBOARD_TOKEN.",
    )
    dashboard_port: int = Field(default=8377, ge=0, le=65535, description="Dashboard TCP port.")
    result_ttl_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long results are kept in Redis, in seconds."
    )
    job_ttl_s: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long job states are kept in Redis, in seconds.",
    )
    history_payload_bytes: int = Field(
        default=4096,
        ge=0,
        description="Largest copy of a finished job's payload (secrets redacted) its record "
        "keeps for the dashboard, in bytes; a larger payload keeps its first bytes (0: none).",
    )
    # --- deduplication of submissions (workers/deduplication.py) -------------------------------
    dedup_mode: DedupMode = Field(
        default="until_finished",
        description="When a submission with the key of an earlier job returns that job: while it "
        "is queued/running/retrying (until_finished), while it is queued (until_started), or "
        "within EVALQ_DEDUP_WINDOW_S of its submission (window). `submit --dedup` overrides it.",
    )
    dedup_window_s: float | None = Field(
        default=None,
        gt=0,
        description="The window of dedup mode `window`, in seconds (at most EVALQ_JOB_TTL_S).",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest evaluation request accepted at submission (its JSON encoding in "
        "UTF-8), in bytes; a larger one is refused and nothing is enqueued.",
    )
    # --- lanes: one queue and one worker pool each (`evalq up` starts them) ---------------------
    live_processes: int = Field(default=1, ge=1, description="Worker processes of the live lane.")
    live_threads: int = Field(default=4, ge=1, description="Threads per live worker process.")
    live_max_age_s: float = Field(
        default=300, ge=0, description="A live job older than this is expired, not run (0: never)."
    )
    batch_processes: int = Field(default=1, ge=1, description="Worker processes of the batch lane.")
    batch_threads: int = Field(default=8, ge=1, description="Threads per batch worker process.")
    batch_max_age_s: float = Field(
        default=3 * 24 * 3600,
        ge=0,
        description="A batch job older than this is expired (0: never).",
    )
    default_processes: int = Field(
        default=1, ge=1, description="Worker processes of the default lane."
    )
    default_threads: int = Field(default=2, ge=1, description="Threads per default worker process.")
    default_max_age_s: float = Field(
        default=7 * 24 * 3600, ge=0, description="A default-lane job older than this is expired."
    )
    # --- time limits -------------------------------------------------------------------------
    time_limit_s: float = Field(
        default=300, gt=0, description="Time limit of one attempt of any actor, in seconds."
    )
    time_limits: dict[str, float] = Field(
        default_factory=dict,
        description='Per-actor time limits in seconds, as JSON: {"run_live_evaluation": 60}.',
    )
    store_patience_s: float = Field(
        default=20,
        ge=0,
        description="How long a worker keeps a result the provider already gave while evalq's "
        "Redis is unreachable, before the job is retried as store_unavailable, in seconds.",
    )
    # --- provider rate limits, shared by every worker through Redis -----------------------------
    provider_max_concurrency: int = Field(
        default=0, ge=0, description="Provider requests in flight at once, all workers (0: no cap)."
    )
    provider_requests_per_minute: int = Field(
        default=0, ge=0, description="Provider requests per minute, all workers (0: no cap)."
    )
    provider_limits: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description='Per-provider caps as JSON: {"openai": {"max_concurrency": 8, '
        '"requests_per_minute": 500}}; the `provider` of an LLM config picks one.',
    )
    heartbeat_timeout_ms: int = Field(
        default=60_000,
        ge=1000,
        description="A worker silent for this long is presumed dead and "
        "its unfinished jobs are redelivered, in milliseconds.",
    )
    redelivery_interval_ms: int = Field(
        default=1000,
        ge=100,
        le=60_000,
        description="How often each worker process refreshes its heartbeat and puts dead "
        "workers' jobs back at the head of their queues, in milliseconds.",
    )
    maintenance_chance: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Broker commands out of a million that "
        "also look for dead workers' jobs to redeliver.",
    )
    heartbeat_file: Path | None = Field(
        default=None,
        description="Liveness file each worker process touches while its Redis answers and its "
        "threads live (`python -m middleware.heartbeat FILE` probes it). Unset: no file.",
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, le=300, description="Seconds between liveness-file beats."
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
        default=Path(".evalq"),
        description="Where `evalq up` keeps its embedded Redis and advert. Unset: `.evalq` in "
        "the working directory; clients and workers also look in its parents for a running "
        "`evalq up`.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if is_sentinel_url(value):
            parse_sentinel_url(value)
        elif not value.startswith(NODE_SCHEMES):
            raise ValueError(f"must start with {', '.join(NODE_SCHEMES + SENTINEL_SCHEMES)}")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_list(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_sentinels(value)
        return value

    @model_validator(mode="after")
    def _sentinel_url(self) -> Settings:
        """With EVALQ_REDIS_SENTINELS, EVALQ_REDIS_URL becomes the one Sentinel URL everything
        past the settings reads (a child process given it back gets the same URL)."""
        sentinels, master = self.redis_sentinels, self.redis_sentinel_master
        if sentinels is None and master is None:
            return self
        if sentinels is None or not master:
            raise ValueError(
                "EVALQ_REDIS_SENTINELS and EVALQ_REDIS_SENTINEL_MASTER go together: set both"
            )
        if self.redis_url is not None and is_sentinel_url(self.redis_url):
            given = parse_sentinel_url(self.redis_url)
            if (given.sentinels, given.master) != (parse_sentinels(sentinels), master):
                raise ValueError(
                    "EVALQ_REDIS_URL names other sentinels or another master than "
                    "EVALQ_REDIS_SENTINELS/EVALQ_REDIS_SENTINEL_MASTER: set one of them"
                )
            return self
        self.redis_url = compose_sentinel_url(sentinels, master, self.redis_url)
        return self

    @field_validator("provider_base_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("dedup_window_s")
    @classmethod
    def _window_fits_mode(cls, value: float | None, info: ValidationInfo) -> float | None:
        mode = info.data.get("dedup_mode")
        if value is None and mode == "window":
            raise ValueError("EVALQ_DEDUP_MODE=window needs a window: set EVALQ_DEDUP_WINDOW_S")
        job_ttl_s = info.data.get("job_ttl_s")
        if value is not None and job_ttl_s is not None and value > job_ttl_s:
            raise ValueError(
                f"cannot be longer than EVALQ_JOB_TTL_S ({job_ttl_s} s), how long the job "
                "records a window is measured from are kept"
            )
        return value

    @field_validator("time_limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, float]) -> dict[str, float]:
        for actor, seconds in value.items():
            if seconds <= 0:
                raise ValueError(f"the time limit of {actor} must be positive, not {seconds}")
        return value

    @field_validator("provider_limits")
    @classmethod
    def _known_limit_keys(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for provider, limits in value.items():
            unknown = set(limits) - {"max_concurrency", "requests_per_minute"}
            if unknown:
                raise ValueError(
                    f"{provider}: unknown key(s) {sorted(unknown)}; "
                    "use max_concurrency and requests_per_minute"
                )
            if any(v < 0 for v in limits.values()):
                raise ValueError(f"{provider}: limits cannot be negative")
        return value

    def time_limit_for(self, actor: str) -> float:
        """The time limit of one attempt of ``actor``, in seconds."""
        return self.time_limits.get(actor, self.time_limit_s)

    def lane(self, name: str) -> tuple[int, int, float]:
        """``(processes, threads, max_age_s)`` of a lane (``live``, ``batch`` or ``default``)."""
        return (
            getattr(self, f"{name}_processes"),
            getattr(self, f"{name}_threads"),
            getattr(self, f"{name}_max_age_s"),
        )

    @property
    def data_dir_is_set(self) -> bool:
        """Whether ``EVALQ_DATA_DIR`` was given (then no parent directory is searched)."""
        return "data_dir" in self.model_fields_set


class SettingsError(ConfigurationError):
    """A setting that cannot be used; the message names the variable (never a secret)."""

    kind = "invalid settings"


def read_settings(**values: Any) -> Settings:
    """Settings from the environment (``values`` override it), or a ``SettingsError`` naming
    each bad variable on one line."""
    try:
        return Settings(**values)
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None
    except _SourceError as error:  # a JSON-valued variable that is not JSON
        raise SettingsError(_describe_source_error(error)) from None


_SOURCE_FIELD = re.compile(r'field "(\w+)"')


def _describe_source_error(error: _SourceError) -> str:
    found = _SOURCE_FIELD.search(str(error))
    variable = _variable_name(found.group(1)) if found else "EVALQ_*"
    cause = error.__cause__
    detail = f" ({cause})" if cause is not None and not isinstance(cause, _SourceError) else ""
    return f"{variable}: not valid JSON{detail}"


def describe_error(error: ValidationError) -> str:
    """Render a settings validation error as one line per variable, naming the variable."""
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a check across fields names its variables itself
            lines.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        variable = _variable_name(field)
        lines.append(f"{variable}: {item['msg']}")
    return "; ".join(lines)


def _variable_name(field: str) -> str:
    if field in ("sentry_dsn", "SENTRY_DSN", "EVALQ_SENTRY_DSN"):
        return "SENTRY_DSN"
    return f"EVALQ_{field.upper()}"
