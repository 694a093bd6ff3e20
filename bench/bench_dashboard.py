"""Render time of the dashboard's pages over a large Redis, in milliseconds.

An embedded Redis is filled (pipelined) with queued messages, job records and dead letters —
short mode: 100,000 / 100,000 / 20,000; full mode (``EVALQ_BENCH_FULL=1``, ``make bench-full``):
1,000,000 / 1,000,000 / 100,000 — then each page is requested through the whole app (auth
middleware, query, template) with Starlette's TestClient: the overview, a job's page, the
dead-letter page newest first, filtered, and at 90 % depth through its cursor, and the history
search (over the job index, filled by its own transition script) newest first, filtered by state
and category, and at 90 % depth. Target: each page under 200 ms,
and a deep page within 1.5x of the first. Baseline, measured in the same run through the same
client: ``GET /healthz`` (the app's fixed cost without Redis).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis
from starlette.testclient import TestClient

from bench.bench_dead_letters import _record
from bench.bench_jobs import _cursor_at as cursor_at
from bench.bench_jobs import _fill as fill_jobs
from config.settings import Settings
from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from middleware.state.job_states import attempt_record
from workers.embedded_redis import EmbeddedRedis

FULL = os.environ.get("EVALQ_BENCH_FULL") == "1"
QUEUED = 1_000_000 if FULL else 100_000
JOBS = 1_000_000 if FULL else 100_000
DEAD_LETTERS = 100_000 if FULL else 20_000
TARGET_MS = 200.0
DEPTH_RATIO_TARGET = 1.5
REPEATS = 20
BATCH = 10_000
TOKEN = "bench-token-0123456789"
_ATTEMPT = json.dumps(attempt_record(1, started_at=1, finished_at=2, outcome="succeeded"))


def _fill_queue(client: redis.Redis, queue: str, count: int) -> None:
    body = b'{"queue_name":"evaluations.batch","actor_name":"run_batch_evaluation","args":[]}'
    for start in range(0, count, BATCH):
        pipe = client.pipeline(transaction=False)
        ids = [f"m{i}" for i in range(start, min(start + BATCH, count))]
        pipe.rpush(keys.queue_key(queue), *ids)
        pipe.hset(keys.queue_messages_key(queue), mapping=dict.fromkeys(ids, body))
        pipe.execute()


def _median_ms(call: Callable[[], Any]) -> float:
    call()
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def _row(
    name: str, value: float, baseline: float, target: float, unit: str = "ms"
) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 2),
        "target": target,
        "ok": value <= target,
    }


def _get(client: TestClient, path: str) -> Callable[[], Any]:
    def call() -> None:
        response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        if response.status_code != 200:
            raise AssertionError(f"GET {path}: {response.status_code} {response.text[:200]}")

    return call


def _deep_cursor(store: DeadLetters, depth: int) -> str:
    cursor = None
    for _ in range(depth // 1000):
        cursor = store.list(limit=1000, cursor=cursor).next_cursor
    assert cursor is not None
    return cursor


def run() -> list[dict[str, Any]]:
    import workers
    from dashboard import Services, create_app

    with (
        tempfile.TemporaryDirectory(prefix="evalq-bench-") as data_dir,
        EmbeddedRedis(data_dir=data_dir) as server,
    ):
        client = redis.Redis.from_url(server.url)
        try:
            now = int(time.time() * 1000)
            _fill_queue(client, "evaluations.batch", QUEUED)
            # Job records as the job index's own transition script writes them (hash + index).
            fill_jobs(client, JOBS, now - 2 * JOBS)
            job_ids = [f"{i:08d}-bench-job" for i in (0, JOBS // 2, JOBS - 1)]
            store = DeadLetters(client, max_records=DEAD_LETTERS)
            store.add_many(_record(i, now - 2 * DEAD_LETTERS) for i in range(DEAD_LETTERS))
            settings = Settings(dashboard_token=TOKEN)
            app = create_app(settings, Services.from_settings(settings, client, workers.policy))
            with TestClient(app) as http:
                baseline = _median_ms(_get(http, "/healthz"))
                size = f"{QUEUED:,} queued, {JOBS:,} jobs, {DEAD_LETTERS:,} dead letters"
                cursor = _deep_cursor(store, DEAD_LETTERS * 9 // 10)
                first = _median_ms(_get(http, "/dlq"))
                deep = _median_ms(_get(http, f"/dlq?cursor={cursor}"))
                rows = [
                    _row(f"page: overview ({size})", _median_ms(_get(http, "/")), baseline,
                         TARGET_MS),
                    _row("page: job detail", _median_ms(_get(http, f"/jobs/{job_ids[1]}")),
                         baseline, TARGET_MS),
                    _row("page: dead letters, newest 50", first, baseline, TARGET_MS),
                    _row("page: dead letters, one category",
                         _median_ms(_get(http, "/dlq?category=timeout")), baseline, TARGET_MS),
                    _row(f"page: dead letters at depth {DEAD_LETTERS * 9 // 10:,}", deep, baseline,
                         TARGET_MS),
                    _row("dead letters: deep page / first page", deep / first, 1.0,
                         DEPTH_RATIO_TARGET, unit="x"),
                ]  # fmt: skip
                rows += _history_rows(http, client, baseline)
                return rows
        finally:
            client.close()


def _history_rows(http: TestClient, client: redis.Redis, baseline: float) -> list[dict[str, Any]]:
    """History search over the job index: the first page, and the page at 90 % depth (the
    cursor a reader paging down would hold there)."""
    first = _median_ms(_get(http, "/jobs"))
    depth = JOBS * 9 // 10
    cursor = cursor_at(client, depth)
    deep = _median_ms(_get(http, f"/jobs?cursor={cursor}"))
    filtered = _median_ms(_get(http, "/jobs?state=dead_lettered&category=timeout"))
    return [
        _row("page: history, newest 50", first, baseline, TARGET_MS),
        _row("page: history, one state and category", filtered, baseline, TARGET_MS),
        _row(f"page: history at depth {depth:,}", deep, baseline, TARGET_MS),
        _row("history: deep page / first page", deep / first, 1.0, DEPTH_RATIO_TARGET, "x"),
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
