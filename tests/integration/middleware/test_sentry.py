"""Sentry reporting, in process: the real sentry-sdk posts to an ingest endpoint on 127.0.0.1,
the per-job markers live in a real Redis. Everything is asserted on what the endpoint received."""

from __future__ import annotations

import gzip
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
import sentry_sdk
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import Settings
from middleware.core.fingerprint import fingerprint
from middleware.core.redaction import REDACTED
from middleware.sentry import (
    HTTP_TIMEOUT_S,
    SHUTDOWN_TIMEOUT_S,
    TRANSPORT_QUEUE_SIZE,
    InvalidSentryDsn,
    SecretScrubber,
    SentryReporter,
    close_sentry,
    init_sentry,
)
from middleware.state import keys
from tests.support.sentry_endpoint import SentryEndpoint, parse_envelope

pytestmark = pytest.mark.integration

ACTOR = "run_llm_evaluation"
QUEUE = "evaluations.live"
PROVIDER_KEY = "prov-0a1b2c3d4e5f-custom-format"  # not sk-..., so only the literal scrub hides it


class ToolsNotSupported(Exception):
    """A root cause the provider raised."""


class JudgeFailed(Exception):
    """A wrapper, as application code raises around a root cause."""


class EvaluationFailed(Exception):
    """Another wrapper."""


def settings_for(dsn: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test", "provider_api_key": PROVIDER_KEY, **overrides}
    if dsn is not None:
        values["SENTRY_DSN"] = dsn
    return Settings(**values)


def chained(root: BaseException, *wrappers: BaseException) -> BaseException:
    """``root`` raised, then each wrapper raised from the previous one: a real chain."""
    current = root
    for wrapper in wrappers:
        try:
            try:
                raise current
            except BaseException as inner:
                raise wrapper from inner
        except BaseException as outer:
            current = outer
    return current


def report(reporter: SentryReporter, exception: BaseException, **overrides: Any) -> str | None:
    values: dict[str, Any] = {
        "exception": exception,
        "root_cause": None,
        "job_id": str(uuid.uuid4()),
        "actor": ACTOR,
        "queue": QUEUE,
        "category": "unknown",
        "rule": None,
        "attempt": 1,
        "decision": "retry",
        "env": "test",
        **overrides,
    }
    return reporter.report(**values)


def flush() -> None:
    sentry_sdk.flush(timeout=5)


@pytest.fixture
def endpoint() -> Iterator[SentryEndpoint]:
    with SentryEndpoint() as running:
        yield running


@pytest.fixture
def sentry_off() -> Iterator[None]:
    """Whatever a test does to the process-wide SDK, the next test starts with it off."""
    yield
    close_sentry(timeout_s=0)


@pytest.fixture
def reporter(
    endpoint: SentryEndpoint, redis_client: redis.Redis, sentry_off: None
) -> SentryReporter:
    made = init_sentry(settings_for(endpoint.dsn), redis_client)
    assert made is not None
    return made


# --- grouping and deduplication --------------------------------------------------------------


def test_one_root_cause_on_many_jobs_sends_one_event_per_job_with_one_fingerprint(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    wrappers = [
        lambda i: (JudgeFailed(f"judge call {uuid.uuid4()} failed"),),
        lambda i: (JudgeFailed(f"attempt {i}"), EvaluationFailed(f"evaluation {uuid.uuid4()}")),
        lambda i: (RuntimeError(f"job #{i} at 0x{i:012x}"),),
    ]
    job_ids = [str(uuid.uuid4()) for _ in range(6)]

    sent: dict[str, str | None] = {}
    for i, job_id in enumerate(job_ids):
        root = ToolsNotSupported(
            f"tools is not supported in this model (request req_{uuid.uuid4().hex})"
        )
        sent[job_id] = report(
            reporter, chained(root, *wrappers[i % 3](i)), job_id=job_id, attempt=i + 1
        )

    events = endpoint.wait_for(6)
    assert sorted(e["tags"]["job_id"] for e in events) == sorted(job_ids)
    # The id each report returns is the id of the event the endpoint received for that job.
    assert {e["tags"]["job_id"]: e["event_id"] for e in events} == sent
    fingerprints = {tuple(e["fingerprint"]) for e in events}
    assert fingerprints == {
        (
            "evalq",
            ACTOR,
            f"{ToolsNotSupported.__module__}.ToolsNotSupported",
            "tools is not supported in this model (request <id>)",
        )
    }


def test_two_root_causes_get_two_fingerprints(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    report(reporter, chained(ToolsNotSupported("tools is not supported"), JudgeFailed("x")))
    report(reporter, chained(KeyError("target"), JudgeFailed("x")))

    events = endpoint.wait_for(2)
    assert len({tuple(e["fingerprint"]) for e in events}) == 2
    assert {e["fingerprint"][2] for e in events} == {
        f"{ToolsNotSupported.__module__}.ToolsNotSupported",
        "builtins.KeyError",
    }


def test_the_same_job_reported_three_times_sends_one_event(
    reporter: SentryReporter, endpoint: SentryEndpoint, redis_client: redis.Redis
) -> None:
    job_id = str(uuid.uuid4())

    results = [
        report(
            reporter,
            chained(ToolsNotSupported(f"tools is not supported ({n})"), JudgeFailed(f"try {n}")),
            job_id=job_id,
            attempt=n,
        )
        for n in (1, 2, 3)
    ]
    flush()

    assert results[0] is not None and results[1:] == [None, None]
    assert len(endpoint.events()) == 1
    assert endpoint.events()[0]["tags"]["attempt"] == "1"
    marker = keys.sentry_sent_key(job_id, "")  # the prefix of this job's markers
    stored = redis_client.keys(f"{marker}*")
    assert len(stored) == 1
    assert 0 < redis_client.ttl(stored[0]) <= settings_for(None).job_ttl_s


def test_another_process_does_not_report_the_same_job_and_root_cause_again(
    reporter: SentryReporter, endpoint: SentryEndpoint, redis_client: redis.Redis
) -> None:
    job_id = str(uuid.uuid4())
    other_process = SentryReporter(redis_client, dedupe_ttl_s=60)

    first = report(reporter, ToolsNotSupported("tools is not supported"), job_id=job_id)
    second = report(other_process, ToolsNotSupported("tools is not supported"), job_id=job_id)
    flush()

    assert first is not None and second is None
    assert len(endpoint.events()) == 1


def test_the_same_job_failing_with_a_new_root_cause_is_reported_again(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    job_id = str(uuid.uuid4())

    assert report(reporter, ToolsNotSupported("tools is not supported"), job_id=job_id)
    assert report(reporter, TimeoutError("judge timed out"), job_id=job_id, attempt=2)

    assert len(endpoint.wait_for(2)) == 2


def test_without_redis_the_process_remembers_what_it_sent(
    endpoint: SentryEndpoint, sentry_off: None
) -> None:
    unreachable = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    made = init_sentry(settings_for(endpoint.dsn), unreachable)
    assert made is not None
    job_id = str(uuid.uuid4())

    first = report(made, ToolsNotSupported("tools is not supported"), job_id=job_id)
    second = report(made, ToolsNotSupported("tools is not supported"), job_id=job_id)
    flush()

    assert first is not None and second is None
    assert len(endpoint.events()) == 1


# --- tags, level, context, payload -----------------------------------------------------------


def test_an_unknown_failure_is_an_error_event_tagged_with_the_job(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    job_id = str(uuid.uuid4())

    report(
        reporter,
        chained(ToolsNotSupported("boom"), JudgeFailed("wrapped")),
        job_id=job_id,
        attempt=2,
        decision="retry",
    )

    (event,) = endpoint.wait_for(1)
    assert event["level"] == "error"
    assert event["environment"] == "test"
    assert event["tags"] == {
        "queue": QUEUE,
        "actor": ACTOR,
        "job_id": job_id,
        "evalq_job": job_id,
        "category": "unknown",
        "rule": "none",
        "attempt": "2",
        "decision": "retry",
        "evalq_env": "test",
    }
    assert event["contexts"]["evalq"]["dashboard_path"] == f"/jobs/{job_id}"
    assert event["contexts"]["evalq"]["job_id"] == job_id
    types = [value["type"] for value in event["exception"]["values"]]
    assert types == ["ToolsNotSupported", "JudgeFailed"]  # the whole chain, root first
    assert "extra" not in event or "payload" not in event["extra"]


def test_a_reported_known_category_is_a_warning(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    report(
        reporter,
        PermissionError("401 invalid api key"),
        category="auth",
        rule="auth-401",
        decision="dead_letter",
    )

    (event,) = endpoint.wait_for(1)
    assert event["level"] == "warning"
    assert event["tags"]["category"] == "auth"
    assert event["tags"]["rule"] == "auth-401"
    assert event["tags"]["decision"] == "dead_letter"


def test_the_payload_is_not_attached_unless_asked_for(
    endpoint: SentryEndpoint, redis_client: redis.Redis, sentry_off: None
) -> None:
    payload = {"args": [{"target": {"actual_output": "user text"}}], "kwargs": {}}
    plain = init_sentry(settings_for(endpoint.dsn), redis_client)
    assert plain is not None
    report(plain, ValueError("a"), payload=payload)
    (event,) = endpoint.wait_for(1)
    assert "user text" not in json.dumps(event)

    endpoint.clear()
    attaching = init_sentry(settings_for(endpoint.dsn, sentry_attach_payload=True), redis_client)
    assert attaching is not None
    secret_payload = {**payload, "options": {"api_key": "abc123456789", "note": "sk-abcdefghijk"}}
    report(attaching, ValueError("b"), payload=secret_payload)
    (event,) = endpoint.wait_for(1)
    attached = json.loads(event["extra"]["payload"])
    assert attached["args"][0]["target"]["actual_output"] == "user text"
    assert attached["options"] == {"api_key": REDACTED, "note": REDACTED}


# --- scrubbing -------------------------------------------------------------------------------


def test_keys_dsns_and_bearer_tokens_never_leave_the_process(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    openai_key = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3"
    other_dsn_key = "0123456789abcdef0123456789abcdef"
    other_dsn = f"https://{other_dsn_key}@o123.ingest.sentry.io/4567"
    bearer = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0cGF5bG9hZA.c2lnbmF0dXJl"
    secrets = [openai_key, other_dsn, other_dsn_key, bearer, PROVIDER_KEY, endpoint.dsn]
    text = (
        f"provider said no to {openai_key} (key {PROVIDER_KEY}); sentry {other_dsn}; "
        f"own dsn {endpoint.dsn}; headers: Authorization: Bearer {bearer}"
    )
    logging.getLogger("evalq.test").warning("about to fail: %s", text)  # becomes a breadcrumb

    report(reporter, chained(ToolsNotSupported(text), JudgeFailed(f"wrapped: {text}")))

    endpoint.wait_for(1)
    flush()
    raw = b"\n".join(endpoint.bodies())
    for secret in secrets:
        assert secret.encode() not in raw, secret
    (event,) = endpoint.events()
    assert REDACTED in event["exception"]["values"][0]["value"]
    crumbs = [c.get("message") or "" for c in event["breadcrumbs"]["values"]]
    assert any(m.startswith("about to fail:") and REDACTED in m for m in crumbs)


def test_the_scrubber_drops_authorization_headers_and_redacts_everywhere() -> None:
    scrub = SecretScrubber(["literal-secret-value"])
    event: Any = {
        "request": {
            "headers": {"Authorization": "Bearer abcdefghijkl", "Accept": "application/json"},
            "query_string": "dsn=abc&page=2",
            "cookies": {"session": "x"},
        },
        "extra": {"client_secret": "abc", "note": "literal-secret-value here"},
        "contexts": {"openai": {"api_key": "sk-abcdefghijkl"}},
        "tags": {"url": "https://user:pw@example.com/x"},
        "breadcrumbs": {
            "values": [
                {"message": "Bearer abcdefghijklmnop", "data": {"http.query": "token=abc&x=1"}}
            ]
        },
        "exception": {"values": [{"type": "E", "value": "used sk-abcdefghijkl"}]},
    }

    out = scrub(event, {})

    assert out["request"]["headers"] == {"Accept": "application/json"}
    assert "cookies" not in out["request"]
    assert "abc" not in out["request"]["query_string"]
    assert "page=2" in out["request"]["query_string"]
    assert out["extra"] == {"client_secret": REDACTED, "note": f"{REDACTED} here"}
    assert out["contexts"]["openai"]["api_key"] == REDACTED
    assert out["tags"]["url"] == f"https://{REDACTED}@example.com/x"
    assert "abcdefghijklmnop" not in json.dumps(out["breadcrumbs"])
    assert "token=abc" not in json.dumps(out["breadcrumbs"])
    assert out["exception"]["values"][0]["value"] == f"used {REDACTED}"


# --- configuration ---------------------------------------------------------------------------


def test_without_a_dsn_nothing_is_initialised(redis_client: redis.Redis, sentry_off: None) -> None:
    assert init_sentry(settings_for(None), redis_client) is None
    assert init_sentry(settings_for("  "), redis_client) is None
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize(
    "dsn",
    [
        "not a dsn at all s3cr3tvalue",
        "ftp://s3cr3tvalue@sentry.example.com/1",
        "https://sentry.example.com/1",
        "https://s3cr3tvalue@sentry.example.com/project",
        "https://s3cr3tvalue@sentry.example.com:99999/1",
        "https://s3cr3tvalue@:443/1",
    ],
)
def test_an_invalid_dsn_is_a_clear_error_that_does_not_echo_it(
    dsn: str, redis_client: redis.Redis, sentry_off: None
) -> None:
    with pytest.raises(InvalidSentryDsn) as raised:
        init_sentry(settings_for(dsn), redis_client)

    message = str(raised.value)
    assert message.startswith("SENTRY_DSN: ")
    assert "PUBLIC_KEY@HOST/PROJECT_ID" in message
    assert "s3cr3tvalue" not in message
    assert dsn not in message
    assert not sentry_sdk.get_client().is_active()


def test_the_sdk_runs_with_the_options_evalq_relies_on(reporter: SentryReporter) -> None:
    client = sentry_sdk.get_client()
    options = client.options

    assert options["transport_queue_size"] == TRANSPORT_QUEUE_SIZE
    assert options["shutdown_timeout"] == SHUTDOWN_TIMEOUT_S
    assert options["traces_sample_rate"] is None
    assert options["profiles_sample_rate"] is None
    assert options["send_default_pii"] is False
    assert options["include_local_variables"] is False
    assert options["environment"] == "test"
    assert client.transport is not None
    assert client.transport.TIMEOUT == HTTP_TIMEOUT_S  # type: ignore[attr-defined]
    assert "dramatiq" not in client.integrations
    assert "redis" not in client.integrations and "openai" not in client.integrations
    logging_integration = client.integrations["logging"]
    assert logging_integration._handler is None  # type: ignore[attr-defined]  # no events
    assert logging_integration._breadcrumb_handler is not None  # type: ignore[attr-defined]
    assert dramatiq.broker.Broker.__init__.__name__ == "__init__"  # not patched by the SDK


def test_error_logs_with_tracebacks_send_no_events(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    try:
        raise ToolsNotSupported("tools is not supported")
    except ToolsNotSupported:
        logging.getLogger("dramatiq.worker.WorkerThread").exception("Failed to process message")
        logging.getLogger("evalq.error_policy").exception("job x attempt 1 -> dead_letter")
        logging.getLogger("some.library").critical("bad", exc_info=True)
    flush()

    assert endpoint.events() == []
    assert endpoint.requests == 0


# --- Sentry down or slow ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["refuse", "close"])
def test_reporting_to_a_sentry_that_is_down_is_prompt_and_never_raises(
    mode: str, reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    endpoint.down(mode)  # type: ignore[arg-type]

    started = time.perf_counter()
    results = [report(reporter, ToolsNotSupported(f"boom {n}")) for n in range(50)]
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert all(r is None or isinstance(r, str) for r in results)
    started = time.perf_counter()
    close_sentry()
    assert time.perf_counter() - started < SHUTDOWN_TIMEOUT_S + 1.0


def test_reporting_to_a_slow_sentry_is_prompt_and_shutdown_does_not_wait_for_it(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    endpoint.slow(5)

    started = time.perf_counter()
    for n in range(50):
        report(reporter, ToolsNotSupported(f"boom {n}"))
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    started = time.perf_counter()
    close_sentry()
    assert time.perf_counter() - started < SHUTDOWN_TIMEOUT_S + 1.0


def test_a_request_to_a_slow_sentry_is_abandoned_after_the_http_timeout(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    endpoint.slow(6)
    report(reporter, ToolsNotSupported("first"), job_id="stuck")
    time.sleep(0.2)  # the background sender is now waiting on the slow endpoint
    endpoint.slow(0)

    started = time.monotonic()
    report(reporter, ToolsNotSupported("second"), job_id="after")
    deadline = started + 5.0
    while time.monotonic() < deadline:
        if any(e["tags"]["job_id"] == "after" for e in endpoint.events()):
            break
        time.sleep(0.02)
    waited = time.monotonic() - started

    assert any(e["tags"]["job_id"] == "after" for e in endpoint.events())
    assert waited < HTTP_TIMEOUT_S + 1.5  # well before the endpoint's 6 s


def test_a_full_transport_queue_drops_events_instead_of_blocking(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    endpoint.slow(5)

    started = time.perf_counter()
    for n in range(TRANSPORT_QUEUE_SIZE * 4):
        report(reporter, ToolsNotSupported(f"boom {n}"))
    elapsed = time.perf_counter() - started

    # Building 200 events is CPU work (~1-3 s on a loaded machine); had a report waited for the
    # stalled endpoint, the 150 beyond the queue would each have cost the 2 s HTTP timeout.
    assert elapsed < 10.0


# --- the test endpoint itself ----------------------------------------------------------------


def test_the_endpoint_decodes_gzip_envelopes_with_and_without_item_lengths(
    endpoint: SentryEndpoint,
) -> None:
    event = {"event_id": "a" * 32, "message": "line one\nline two"}
    payload = json.dumps(event).encode()
    attachment = b"binary\nwith newlines\n"
    body = b"\n".join(
        [
            json.dumps({"event_id": "a" * 32}).encode(),
            json.dumps({"type": "event", "length": len(payload)}).encode(),
            payload,
            json.dumps({"type": "attachment", "length": len(attachment)}).encode(),
            attachment,
            json.dumps({"type": "client_report"}).encode(),
            b'{"discarded_events": []}',
        ]
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{endpoint.port}/api/1/envelope/",
        data=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-sentry-envelope"},
        method="POST",
    )

    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200

    assert endpoint.events() == [event]
    (envelope,) = endpoint.envelopes()
    assert [item.type for item in envelope.items] == ["event", "attachment", "client_report"]
    assert envelope.items[1].payload == attachment
    assert parse_envelope(body)[0] == {"event_id": "a" * 32}


def test_the_endpoint_accepts_the_legacy_store_route(endpoint: SentryEndpoint) -> None:
    event = {"event_id": "b" * 32, "level": "error"}
    request = urllib.request.Request(
        f"http://127.0.0.1:{endpoint.port}/api/1/store/",
        data=json.dumps(event).encode(),
        method="POST",
    )

    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200

    assert endpoint.wait_for(1, timeout=2) == [event]


def test_the_endpoint_comes_back_up_on_the_same_port(endpoint: SentryEndpoint) -> None:
    dsn = endpoint.dsn
    endpoint.down("refuse")
    with pytest.raises(OSError):
        urllib.request.urlopen(
            f"http://127.0.0.1:{endpoint.port}/api/1/store/", data=b"{}", timeout=2
        )

    endpoint.up()

    assert endpoint.dsn == dsn
    with urllib.request.urlopen(
        f"http://127.0.0.1:{endpoint.port}/api/1/store/", data=b"{}", timeout=2
    ) as response:
        assert response.status == 200


def test_fingerprint_is_the_one_the_reporter_sends(
    reporter: SentryReporter, endpoint: SentryEndpoint
) -> None:
    root = ToolsNotSupported("tools is not supported")
    report(reporter, chained(root, JudgeFailed("x")), actor="run_batch_evaluation")

    (event,) = endpoint.wait_for(1)
    assert event["fingerprint"] == fingerprint("run_batch_evaluation", root)
