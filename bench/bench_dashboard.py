"""Render time of the dashboard's pages over a large Redis, in milliseconds.

An embedded Redis is filled (pipelined) with queued messages, job records and dead letters —
short mode: 100,000 / 100,000 / 20,000; full mode (``EVALQ_BENCH_FULL=1``, ``make bench-full``):
1,000,000 / 1,000,000 / 100,000 — then each page is requested through the whole app (auth
middleware, query, template) with Starlette's TestClient: the overview, a job's page, the
dead-letter page newest first, filtered, and at 90 % depth through its cursor, and (once the job
index exists) the history search first page and at 90 % depth. Target: each page under 200 ms,
and a deep page within 1.5x of the first. Baseline, measured in the same run through the same
client: ``GET /healthz`` (the app's fixed cost without Redis).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from starlette.testclient import TestClient

from bench.bench_dead_letters import _record
from config.settings import Settings
from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from middleware.state.jobs import attempt_record
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


def _fill_jobs(client: redis.Redis, count: int, now_ms: int) -> list[str]:
    job_ids = []
    for start in range(0, count, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, count)):
            job_id = str(uuid.UUID(int=i))
            job_ids.append(job_id)
            pipe.hset(keys.job_key(job_id), mapping={
                "state": "succeeded", "queue": "evaluations.batch",
                "actor": "run_batch_evaluation", "enqueued_at": now_ms - count + i,
                "finished_at": now_ms - count + i + 500,
            })  # fmt: skip
            pipe.hset(keys.attempts_key(job_id), "1", _ATTEMPT)
        pipe.execute()
    return job_ids


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
    from dashboard.queries import search_function

    with (
        tempfile.TemporaryDirectory(prefix="evalq-bench-") as data_dir,
        EmbeddedRedis(data_dir=data_dir) as server,
    ):
        client = redis.Redis.from_url(server.url)
        try:
            now = int(time.time() * 1000)
            _fill_queue(client, "evaluations.batch", QUEUED)
            job_ids = _fill_jobs(client, JOBS, now)
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
                    _row("page: job detail", _median_ms(_get(http, f"/jobs/{job_ids[JOBS // 2]}")),
                         baseline, TARGET_MS),
                    _row("page: dead letters, newest 50", first, baseline, TARGET_MS),
                    _row("page: dead letters, one category",
                         _median_ms(_get(http, "/dlq?category=timeout")), baseline, TARGET_MS),
                    _row(f"page: dead letters at depth {DEAD_LETTERS * 9 // 10:,}", deep, baseline,
                         TARGET_MS),
                    _row("dead letters: deep page / first page", deep / first, 1.0,
                         DEPTH_RATIO_TARGET, unit="x"),
                ]  # fmt: skip
                if search_function() is not None:
                    rows += _history_rows(http, baseline)
                return rows
        finally:
            client.close()


def _history_rows(http: TestClient, baseline: float) -> list[dict[str, Any]]:
    """History search over the job index: the first page, and the page at 90 % depth."""
    cursor = None
    for _ in range(JOBS * 9 // 10 // 200):
        page = http.get(f"/api/jobs?limit=200{'&cursor=' + cursor if cursor else ''}",
                        headers={"Authorization": f"Bearer {TOKEN}"}).json()  # fmt: skip
        cursor = page["next_cursor"]
        if cursor is None:
            break
    first = _median_ms(_get(http, "/jobs"))
    rows = [_row("page: history, newest 50", first, baseline, TARGET_MS)]
    if cursor is not None:
        deep = _median_ms(_get(http, f"/jobs?cursor={cursor}"))
        rows += [
            _row(f"page: history at depth {JOBS * 9 // 10:,}", deep, baseline, TARGET_MS),
            _row("history: deep page / first page", deep / first, 1.0, DEPTH_RATIO_TARGET, "x"),
        ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
