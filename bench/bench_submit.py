"""Cost of submitting 5,000 rule evaluations with ``submit_many``, in milliseconds.

Each submission is claimed (idempotency key) and enqueued by one Lua script; ``submit_many`` sends
them 500 to a round trip. Measured on an embedded Redis, from validated requests to handles, once
with fresh requests and once with all of them duplicates of jobs still queued. Baseline, measured
in the same run on the same server: the same 5,000 requests through ``submit_evaluation``, one
round trip each. (Before pipelining, ``submit_many`` made three round trips per request and took
about 3.5 s here for 5,000.)
"""

from __future__ import annotations

import tempfile
import time
import uuid
from typing import Any

import redis

import workers
from workers import client
from workers.bootstrap import repoint
from workers.embedded_redis import EmbeddedRedis
from workers.evaluations.models import EvaluationRequest

REQUESTS = 5_000
TARGET_MS = 1_500.0


def _request(n: int) -> dict[str, Any]:
    return {
        "evaluation": {
            "uuid": str(uuid.uuid4()),
            "name": "greets",
            "type": "rule",
            "metric": "regular_expression",
            "config": {"pattern": "hello"},
        },
        "target": {"uuid": str(uuid.uuid4()), "actual_output": f"hello world {n}"},
    }


def _validated(n: int) -> list[EvaluationRequest]:
    return [EvaluationRequest.model_validate(_request(i)) for i in range(n)]


def _timed_ms(call: Any) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _row(name: str, value: float, baseline: float) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": "ms",
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 2),
        "target": TARGET_MS,
        "ok": value <= TARGET_MS,
    }


def run() -> list[dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="evalq-bench-") as data_dir,
        EmbeddedRedis(data_dir=data_dir) as server,
    ):
        repoint(workers.broker, server.url)
        direct = redis.Redis.from_url(server.url)
        try:
            client.submit_many([_request(0)])  # warm: script loaded, connections open
            one_by_one = _validated(REQUESTS)
            baseline = _timed_ms(lambda: [client.submit_evaluation(r) for r in one_by_one])
            requests = _validated(REQUESTS)
            fresh = _timed_ms(lambda: client.submit_many(requests))
            duplicates = _timed_ms(lambda: client.submit_many(requests))
            queued = direct.llen("dramatiq:evaluations.batch")
            if queued != 2 * REQUESTS + 1:
                raise AssertionError(f"expected {2 * REQUESTS + 1} queued jobs, found {queued}")
            return [
                _row("submit_many: 5,000 new requests", fresh, baseline),
                _row("submit_many: 5,000 duplicates of queued jobs", duplicates, baseline),
            ]
        finally:
            direct.close()
