"""Sentry: one issue per root cause, one event per job, nothing sent that was not asked for.

This module owns everything about Sentry: initialising the SDK, the tags, the scrubbing and the
per-job deduplication; ``middleware.core.fingerprint`` computes the fingerprint. Nothing else
in evalq imports ``sentry_sdk``. Which failures are reported is the error policy's decision;
this module only sends what it is given.

Sentry is set up when a worker process boots (``workers.bootstrap.WorkerBoot``), never on import.
A process that already has a Sentry client (the host application's) keeps it: evalq reports
through it, adding its fingerprint, tags and scrubbing to its own events, and never replaces it.

Sentry must never slow or break a worker: an event is handed to the SDK's bounded background
queue (``TRANSPORT_QUEUE_SIZE``) and never waited for; a full queue drops the event. The HTTP
request gives up after ``HTTP_TIMEOUT_S`` and shutdown waits at most ``SHUTDOWN_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import sentry_sdk
from sentry_sdk.integrations.dramatiq import DramatiqIntegration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import event_from_exception

from config.settings import SettingsError
from middleware.core.classify import exception_chain, root_cause
from middleware.core.fingerprint import digest, fingerprint
from middleware.core.redaction import REDACTED, SECRET_KEY, redact
from middleware.state import keys

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

    from config.settings import Settings

logger = logging.getLogger("evalq.sentry")

#: Events waiting for the background sender; beyond this they are dropped, never waited for.
TRANSPORT_QUEUE_SIZE = 50
#: How long one HTTP request to Sentry may take (connect and read), in seconds.
HTTP_TIMEOUT_S = 2
#: How long process exit waits for queued events, in seconds.
SHUTDOWN_TIMEOUT_S = 1.0
#: Remembered "sent" markers when Redis cannot be asked (bounded, per process).
LOCAL_MEMORY = 10_000
#: Longest attached payload (JSON, after redaction), in characters.
PAYLOAD_LIMIT = 16_000
#: Dramatiq's worker logs every failed attempt here, at ERROR; the error policy decides instead.
DRAMATIQ_WORKER_LOGGER = "dramatiq.worker.WorkerThread"
#: Headers that are dropped from any event, whatever they hold.
DROPPED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)

Level = Literal["error", "warning"]


class InvalidSentryDsn(SettingsError, ValueError):
    """The configured Sentry DSN cannot be used. The message never contains the DSN itself."""


# --- scrubbing ------------------------------------------------------------------------------


class SecretScrubber:
    """The ``before_send`` hook: every event leaves the process with its secrets redacted.

    Drops credential headers, redacts secret-looking query parameters, then applies
    ``middleware.core.redaction.redact`` to the whole event (exception values, request, extra,
    contexts, breadcrumbs, tags, ...) and replaces the literal secrets it was given.

    Parameters:
      secrets(Iterable[str]): Values never to send (the DSN, API keys); shorter than 8
        characters are ignored.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = {s for s in secrets if len(s) >= 8}
        self.secrets = sorted(unique, key=len, reverse=True)

    def __call__(self, event: Event, hint: Hint) -> Event:
        scrubbed: dict[str, Any] = dict(event)
        request = scrubbed.get("request")
        if isinstance(request, dict):
            scrubbed["request"] = _scrub_request(request)
        for crumb in _breadcrumbs(scrubbed):
            data = crumb.get("data")
            if isinstance(data, dict) and isinstance(data.get("http.query"), str):
                data["http.query"] = _redact_query(data["http.query"])
        result: dict[str, Any] = redact(scrubbed)
        if self.secrets:
            result = self._replace_literals(result)
        return result  # type: ignore[return-value]

    def _replace_literals(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._replace_literals(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._replace_literals(v) for v in value]
        return value


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    request = dict(request)
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {
            k: v for k, v in headers.items() if str(k).lower() not in DROPPED_HEADERS
        }
    if isinstance(request.get("query_string"), str):
        request["query_string"] = _redact_query(request["query_string"])
    request.pop("cookies", None)
    return request


def _breadcrumbs(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        crumbs = crumbs.get("values")
    return [c for c in crumbs or [] if isinstance(c, dict)] if isinstance(crumbs, list) else []


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if SECRET_KEY.search(k) else v) for k, v in pairs])


# --- initialisation -------------------------------------------------------------------------


class _BoundedTransport(HttpTransport):
    """sentry-sdk's HTTP transport with a short request timeout (the SDK's default is 30 s)."""

    TIMEOUT = HTTP_TIMEOUT_S


def validate_dsn(dsn: str) -> None:
    """Raise ``InvalidSentryDsn`` (``"SENTRY_DSN: ..."``, without the DSN) unless ``dsn`` is a
    usable Sentry DSN."""
    expected = "expected http(s)://PUBLIC_KEY@HOST/PROJECT_ID"
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018  (raises for a malformed port)
    except ValueError:
        raise InvalidSentryDsn(f"SENTRY_DSN: not a URL ({expected})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidSentryDsn(f"SENTRY_DSN: scheme must be http or https ({expected})")
    if not parts.hostname:
        raise InvalidSentryDsn(f"SENTRY_DSN: no host ({expected})")
    if not parts.username:
        raise InvalidSentryDsn(f"SENTRY_DSN: no public key before '@' ({expected})")
    if not parts.path.rsplit("/", 1)[-1].isdigit():
        raise InvalidSentryDsn(f"SENTRY_DSN: the path must end with a project id ({expected})")


#: The client ``init_sentry`` made, to tell it from a client the host application made.
_own_client: Any = None


def init_sentry(settings: Settings, client: redis.Redis) -> SentryReporter | None:
    """The reporter the error policy sends through, setting sentry-sdk up from
    ``settings.sentry_dsn`` when the process has no client of its own; ``None`` (and the SDK
    untouched) without a DSN and without a host client.

    A host's client (the application called ``sentry_sdk.init`` first) is kept as it is, its
    DSN, release and ``before_send`` included: evalq's events go through it, scrubbed by evalq
    before they are handed over. ``client`` is the Redis the per-job "already sent" markers live
    in. Raises ``InvalidSentryDsn`` for an unusable DSN.
    """
    global _own_client
    dsn = settings.sentry_dsn.get_secret_value().strip() if settings.sentry_dsn else ""
    secrets = [dsn, settings.provider_api_key.get_secret_value()]
    if settings.dashboard_token is not None:
        secrets.append(settings.dashboard_token.get_secret_value())
    current = sentry_sdk.get_client()
    hosted = current.is_active() and current is not _own_client
    if hosted:
        # Dramatiq logs every failed attempt at ERROR; the error policy decides what is sent.
        ignore_logger(DRAMATIQ_WORKER_LOGGER)
        return SentryReporter(
            client,
            dedupe_ttl_s=settings.job_ttl_s,
            attach_payload=settings.sentry_attach_payload,
            scrubber=SecretScrubber(secrets),
        )
    if not dsn:
        return None
    validate_dsn(dsn)
    if current.is_active():
        close_sentry()  # a second call replaces our own client; the old one must not linger
    with warnings.catch_warnings():
        # 2.75 deprecates send_default_pii in favour of data_collection; passing
        # data_collection would switch off the SDK's own key scrubber, so it is not used.
        warnings.filterwarnings("ignore", ".*send_default_pii.*", DeprecationWarning)
        sentry_sdk.init(
            dsn=dsn,
            environment=settings.env,
            send_default_pii=False,
            # Frame locals hold job payloads; payloads are attached only when asked for.
            include_local_variables=False,
            traces_sample_rate=None,
            profiles_sample_rate=None,
            # The auto-enabled openai integration captures every failed provider call, and
            # the httpx and redis ones breadcrumb every request. Dramatiq's (one event per
            # failed attempt) is not auto-enabled in 2.75; it is disabled in case it becomes so.
            auto_enabling_integrations=False,
            disabled_integrations=[DramatiqIntegration],
            # Breadcrumbs from logs, never events: Dramatiq logs each failed attempt at ERROR.
            integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
            before_send=SecretScrubber(secrets),
            transport=_BoundedTransport,
            transport_queue_size=TRANSPORT_QUEUE_SIZE,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
    _own_client = sentry_sdk.get_client()
    ignore_logger(DRAMATIQ_WORKER_LOGGER)
    return SentryReporter(
        client, dedupe_ttl_s=settings.job_ttl_s, attach_payload=settings.sentry_attach_payload
    )


def close_sentry(timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Send what is queued (waiting at most ``timeout_s``) and switch the SDK off."""
    sentry_sdk.get_client().close(timeout=timeout_s)
    sentry_sdk.get_global_scope().set_client(None)


# --- reporting ------------------------------------------------------------------------------


class SentryReporter:
    """Sends one Sentry event per job and root cause, fingerprinted by the root cause.

    A later attempt of the same job failing with the same root cause sends nothing, in any
    process: the first report claims ``keys.sentry_sent_key(job, fingerprint)`` with
    ``SET NX EX``. When Redis cannot be asked, this process's own memory decides.

    Parameters:
      client(redis.Redis): Where the "already sent" markers live.
      dedupe_ttl_s(int): How long a marker is kept, in seconds.
      attach_payload(bool): Attach the job's payload, redacted, as JSON in ``extra["payload"]``
        (at most ``PAYLOAD_LIMIT`` characters). Default False.
      scrubber(SecretScrubber | None): Applied to each event before it is handed to the SDK;
        for a host's client, whose ``before_send`` is not evalq's. Default None.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        dedupe_ttl_s: int,
        attach_payload: bool = False,
        scrubber: SecretScrubber | None = None,
    ) -> None:
        self.client = client
        self.dedupe_ttl_s = dedupe_ttl_s
        self.attach_payload = attach_payload
        self.scrubber = scrubber
        self._sent: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def report(
        self,
        *,
        exception: BaseException,
        root_cause: BaseException | None,
        job_id: str,
        actor: str,
        queue: str,
        category: str,
        rule: str | None,
        attempt: int,
        decision: str,
        env: str,
        level: Level | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Send one event for this failed attempt unless one was already sent for this job and
        root cause; the id of the event handed to the SDK, None when none was. Never raises,
        never blocks on Sentry.

        ``level`` defaults to ``error`` for ``unknown`` and ``warning`` for other categories;
        ``payload`` is attached only when the reporter was built with ``attach_payload``.
        """
        try:
            root = root_cause if root_cause is not None else _innermost(exception)
            parts = fingerprint(actor, root)
            key = keys.sentry_sent_key(job_id, digest(parts))
            if not self._claim(key):
                return None
            event, hint = event_from_exception(
                exception,
                client_options=sentry_sdk.get_client().options,
                mechanism={"type": "evalq", "handled": True},
            )
            event["level"] = level or ("error" if category == "unknown" else "warning")
            event["fingerprint"] = parts
            event["transaction"] = actor
            event["tags"] = {
                "queue": queue,
                "actor": actor,
                "job_id": job_id,
                "evalq_job": job_id,
                "category": category,
                "rule": rule or "none",
                "attempt": str(attempt),
                "decision": decision,
                "evalq_env": env,
            }
            event["contexts"] = {
                "evalq": {
                    "job_id": job_id,
                    "dashboard_path": f"/jobs/{job_id}",
                    "queue": queue,
                    "actor": actor,
                    "category": category,
                    "rule": rule,
                    "attempt": attempt,
                    "decision": decision,
                }
            }
            if self.attach_payload and payload is not None:
                # As one JSON string: the SDK flattens mappings nested deeper than 5 levels.
                text = json.dumps(redact(dict(payload)), default=str, ensure_ascii=False)
                event["extra"] = {"payload": text[:PAYLOAD_LIMIT]}
            if self.scrubber is not None:
                event = self.scrubber(event, hint)
            event_id = sentry_sdk.capture_event(event, hint=hint)
            if event_id is None:
                self._release(key)
            return event_id
        except Exception:
            logger.warning("job %s: could not report the failure to Sentry", job_id, exc_info=True)
            return None

    def _claim(self, key: str) -> bool:
        """Whether this report is the first for ``key``; remembers it either way."""
        now = time.monotonic()
        try:
            claimed = bool(self.client.set(key, 1, nx=True, ex=self.dedupe_ttl_s))
        except redis.RedisError:
            logger.warning("Sentry dedupe: Redis unreachable; this process's memory decides")
            with self._lock:
                expires = self._sent.get(key)
                claimed = expires is None or expires <= now
        if claimed:
            with self._lock:
                self._sent[key] = now + self.dedupe_ttl_s
                self._sent.move_to_end(key)
                while len(self._sent) > LOCAL_MEMORY:
                    self._sent.popitem(last=False)
        return claimed

    def _release(self, key: str) -> None:
        """Forget a claim whose event was not sent, so that a later attempt may send it."""
        with self._lock:
            self._sent.pop(key, None)
        with contextlib.suppress(redis.RedisError):
            self.client.delete(key)


def _innermost(exception: BaseException) -> BaseException:
    return root_cause(exception_chain(exception))
