"""Secrets planted in requests and in the provider's error messages, run through every ending a
job can have (success, retry then success, dead letter, unknown reported to Sentry): none of
them is found in any Redis value, any worker log or any Sentry envelope afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

import workers
from tests.reliability.chaos import QUICK_BACKOFF, Job, wait_until_settled
from tests.support.failing_actors import fail_unknown
from tests.support.policy import write_test_policy
from tests.support.pools import WorkerPools
from tests.support.requests import llm_request, target_of
from tests.support.sentry_endpoint import Envelope, SentryEndpoint
from workers import actors, client
from workers.bootstrap import repoint
from workers.demo.provider import Reply, SimulatedProvider

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

#: The worker's own provider key and its Sentry DSN key, and secrets of other systems.
PROVIDER_KEY = "sk-proj-PLANTED0provider0key0a1b2c3d4e5f6"
SENTRY_KEY = "f00dfacef00dfacef00dfacef00dface"
OTHER_DSN_KEY = "c0ffee00c0ffee00c0ffee00c0ffee00"
OTHER_DSN = f"https://{OTHER_DSN_KEY}@o4504.ingest.sentry.io/4504123"
TOKEN = "ghpPLANTEDtoken0123456789abcdefghijklmn"
SECRETS = (PROVIDER_KEY, SENTRY_KEY, OTHER_DSN_KEY, TOKEN)
#: How the secrets show up in text: as an API key, a DSN, a bearer token and a key=value pair.
LEAKY_TEXT = (
    f"key {PROVIDER_KEY}, dsn {OTHER_DSN}, sentry https://{SENTRY_KEY}@127.0.0.1/1, "
    f"Authorization: Bearer {TOKEN}, api_key={TOKEN}"
)


@dataclass
class Leaks:
    redis_values: list[str]
    logs: list[str]
    sentry: list[str]
    jobs: dict[str, str | None]
    events: int


def every_redis_value(client: redis.Redis) -> Iterator[tuple[str, bytes]]:
    """Every key and every value in the database, whatever its type."""
    for key in client.scan_iter(count=1000):
        name = key.decode(errors="replace")
        yield name, key
        kind = client.type(key).decode()
        if kind == "string":
            yield name, client.get(key) or b""
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield name, field + b"=" + value
        elif kind == "list":
            yield from ((name, v) for v in client.lrange(key, 0, -1))
        elif kind == "set":
            yield from ((name, v) for v in client.smembers(key))
        elif kind == "zset":
            yield from ((name, v) for v, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            for _, fields in client.xrange(key):
                yield from ((name, k + b"=" + v) for k, v in fields.items())
        else:
            yield name, kind.encode()


def found_in(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    return [secret for secret in SECRETS if secret in text]


def sentry_parts(envelope: Envelope) -> Iterator[tuple[str, bytes]]:
    """What an envelope carries: every item, and its header without the DSN's public key, which
    the SDK must send to its own Sentry (``trace.public_key``, as in X-Sentry-Auth)."""
    headers = json.loads(json.dumps(envelope.headers))
    if headers.get("trace", {}).get("public_key") == SENTRY_KEY:
        del headers["trace"]["public_key"]
    yield "header", json.dumps(headers).encode()
    for n, item in enumerate(envelope.items):
        yield f"item {n} ({item.type})", json.dumps(item.headers).encode() + item.payload


@pytest.fixture(scope="module")
def leaks(_redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaks]:
    redis_client = redis.Redis.from_url(_redis_server)
    redis_client.flushdb()
    repoint(workers.broker, _redis_server)
    tmp = tmp_path_factory.mktemp("secrets")
    policy = write_test_policy(tmp / "policy.toml", QUICK_BACKOFF)
    with SentryEndpoint(public_key=SENTRY_KEY) as endpoint, SimulatedProvider() as provider:
        env = {
            "SENTRY_DSN": endpoint.dsn,
            "EVALQ_POLICY_FILE": str(policy),
            "EVALQ_PROVIDER_BASE_URL": provider.base_url,
            "EVALQ_PROVIDER_API_KEY": PROVIDER_KEY,
            "EVALQ_PROVIDER_TIMEOUT_S": "2",
        }
        pools = WorkerPools(redis_url=_redis_server, log_dir=tmp / "logs")
        try:
            pools.start(
                "default",
                "evaluations.batch",
                "evaluations.live",
                threads=4,
                env=env,
                modules=("workers", "tests.support.failing_actors"),
            )
            endings = {
                "succeeds": [Reply.ok()],
                "retried then succeeds": [
                    Reply.error(500, f"upstream down ({LEAKY_TEXT})"),
                    Reply.ok(),
                ],
                "dead-lettered (invalid request)": [Reply.error(400, f"bad: {LEAKY_TEXT}")],
                "dead-lettered and reported (auth)": [
                    Reply.error(
                        401,
                        f"Incorrect API key provided: {PROVIDER_KEY}. {LEAKY_TEXT}",
                        code="invalid_api_key",
                    )
                ],
            }
            jobs: dict[str, str] = {}
            for ending, replies in endings.items():
                request = llm_request()
                request["target"]["input"] = f"my secrets: {LEAKY_TEXT}"
                request["target"]["actual_output"] = f"here they are: {LEAKY_TEXT}"
                provider.script(target_of(request), replies)
                jobs[ending] = client.submit_evaluation(request).id
            jobs["unknown, reported"] = fail_unknown.send("shard", "from", LEAKY_TEXT).message_id
            bad = llm_request()
            bad["evaluation"]["config"]["api_key"] = PROVIDER_KEY
            bad["evaluation"]["config"]["criteria"] = LEAKY_TEXT
            jobs["invalid payload"] = actors.run_live_evaluation.send(bad).message_id
            states = wait_until_settled(
                redis_client, [Job(j, "", ("", "")) for j in jobs.values()], timeout=60
            )
            endpoint.wait_for(2, timeout=15)
        finally:
            pools.stop()
        redis_leaks = [
            f"{key}: {found_in(value)}"
            for key, value in every_redis_value(redis_client)
            if found_in(value)
        ]
        log_leaks = [
            f"{path.name}: {found_in(line)}: {line[:300]!r}"
            for path in (tmp / "logs").iterdir()
            for line in path.read_bytes().splitlines()
            if found_in(line)
        ]
        sentry_leaks = [
            f"envelope {i} {where}: {found_in(data)}"
            for i, envelope in enumerate(endpoint.envelopes())
            for where, data in sentry_parts(envelope)
            if found_in(data)
        ]
        yield Leaks(
            redis_leaks,
            log_leaks,
            sentry_leaks,
            {ending: states[job] for ending, job in jobs.items()},
            len(endpoint.events()),
        )


def test_the_planted_jobs_reached_every_ending(leaks: Leaks) -> None:
    assert leaks.jobs == {
        "succeeds": "succeeded",
        "retried then succeeds": "succeeded",
        "dead-lettered (invalid request)": "dead_lettered",
        "dead-lettered and reported (auth)": "dead_lettered",
        "unknown, reported": "dead_lettered",
        "invalid payload": "dead_lettered",
    }
    assert leaks.events >= 2


def test_no_redis_value_holds_a_planted_secret(leaks: Leaks) -> None:
    assert leaks.redis_values == []


def test_no_worker_log_line_holds_a_planted_secret(leaks: Leaks) -> None:
    assert leaks.logs == []


def test_no_sentry_envelope_holds_a_planted_secret(leaks: Leaks) -> None:
    assert leaks.sentry == []


def test_the_search_would_find_a_secret(leaks: Leaks) -> None:
    assert found_in(json.dumps({"x": LEAKY_TEXT}).encode()) == list(SECRETS)
