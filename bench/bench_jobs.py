"""Cost of one page of ``search_jobs`` deep in a long job history, in milliseconds.

An embedded Redis is filled with job records written by the job index's own ``transition``
script (pipelined), over three queues, three actors and every state, failures with a category.
Then one page of 50 is read newest first, at depth 90 % (through the cursor of the page there),
and filtered by state and by queue and state, first and deep. Baselines, measured in the same run
on the same server: ``HGETALL`` of one job record, and for each deep page the same page at the
top of its listing.

``make bench`` fills 100,000 records; ``EVALQ_BENCH_JOB_RECORDS=1000000 make bench`` (or
``python -m bench.bench_jobs --records 1000000``) runs it with a million.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

from middleware.state import keys
from middleware.state.job_index import _encode_cursor
from middleware.state.job_states import STATES
from middleware.state.jobs import search_jobs
from middleware.state.scripts import scripts_for
from workers.embedded_redis import EmbeddedRedis

RECORDS = int(os.environ.get("EVALQ_BENCH_JOB_RECORDS", "100000"))
PAGE = 50
TARGET_MS = 50.0
#: A deep page may cost at most this many times the first page of the same listing.
DEPTH_RATIO_TARGET = 2.0
REPEATS = 50
FILL_BATCH = 2_000
QUEUES = ("evaluations.batch", "evaluations.live", "default")
ACTORS = ("run_batch_evaluation", "run_live_evaluation", "export_results")
CATEGORIES = ("timeout", "rate_limited", "model_capability", "unknown")


def _fields(i: int, start_ms: int) -> list[Any]:
    state = STATES[i % len(STATES)]
    fields: list[Any] = [
        "state", state, "queue", QUEUES[i % 3], "actor", ACTORS[i % 3],
        "enqueued_at", start_ms + i,
    ]  # fmt: skip
    if state in ("retrying", "dead_lettered", "dropped"):
        fields += [
            "category", CATEGORIES[i % len(CATEGORIES)], "error_type", "TimeoutError",
            "error_message", "Request timed out.", "finished_at", start_ms + i + 900,
        ]  # fmt: skip
    return fields


def _fill(client: redis.Redis, records: int, start_ms: int) -> None:
    sha = scripts_for(client).transition.sha
    scripts_for(client).load(client)
    for first in range(0, records, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + FILL_BATCH, records)):
            job_id = f"{i:08d}-bench-job"
            args = [
                job_id,
                7 * 24 * 3600,
                start_ms + i,
                keys.JOB_INDEX_PREFIX,
                *_fields(i, start_ms),
            ]
            pipe.evalsha(sha, 1, keys.job_key(job_id), *args)
        pipe.execute()


def _median_ms(call: Callable[[], Any], repeats: int = REPEATS) -> float:
    call()  # warm: script loaded, connection open
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def _paired_medians_ms(
    first: Callable[[], Any], second: Callable[[], Any], repeats: int = REPEATS
) -> tuple[float, float]:
    """Median times of two calls measured turn about, so that a busy machine slows both alike."""
    first(), second()
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for call, times in ((first, timings[0]), (second, timings[1])):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(timings[0]) * 1000, statistics.median(timings[1]) * 1000


def _cursor_at(client: redis.Redis, depth: int, **filters: Any) -> str:
    """The cursor a reader paging through the listing has after ``depth`` jobs. Built from the
    index itself (walking 900 pages of 1,000 would take minutes) and checked against the page it
    leads to."""
    index = _index_of(**filters)
    ((job_id, score),) = client.zrevrange(index, depth - 1, depth - 1, withscores=True)
    cursor = _encode_cursor(str(score), job_id.decode())
    jobs, _ = search_jobs(client, limit=1, cursor=cursor, **filters)
    ((expected, _),) = client.zrevrange(index, depth, depth, withscores=True)
    if [job["job_id"] for job in jobs] != [expected.decode()]:
        raise AssertionError(f"the cursor at depth {depth} does not lead to the next job")
    return cursor


def _index_of(queue: str | None = None, state: str | None = None) -> str:
    if queue is not None and state is not None:
        return keys.job_queue_state_index_key(queue, state)
    if state is not None:
        return keys.job_index_key("state", state)
    return keys.JOB_INDEX_ALL


def _row(name: str, value: float, baseline: float, target: float) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": "ms",
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 2),
        "target": round(target, 3),
        "ok": value <= target,
    }


def _pair(client: redis.Redis, label: str, depth: int, **filters: Any) -> list[dict[str, Any]]:
    """The first page of a listing against one record's read, and a deep page against it."""
    cursor = _cursor_at(client, depth, **filters)
    first, deep = _paired_medians_ms(
        lambda: search_jobs(client, limit=PAGE, **filters),
        lambda: search_jobs(client, limit=PAGE, cursor=cursor, **filters),
    )
    record = keys.job_key("00000000-bench-job")
    one = _median_ms(lambda: client.hgetall(record))
    return [
        _row(f"jobs: page of 50, {label}", first, one, TARGET_MS),
        _row(
            f"jobs: ... at depth {depth:,} (vs first page)", deep, first, first * DEPTH_RATIO_TARGET
        ),
    ]


def run(records: int = RECORDS) -> list[dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="evalq-bench-") as data_dir,
        EmbeddedRedis(data_dir=data_dir) as server,
    ):
        client = redis.Redis.from_url(server.url)
        try:
            start_ms = int(time.time() * 1000) - 2 * records
            _fill(client, records, start_ms)
            if client.zcard(keys.JOB_INDEX_ALL) != records:
                raise AssertionError("the fill did not index every job")
            per_state = records // len(STATES)
            per_queue_state = records // (len(STATES) * len(QUEUES))
            return [
                *_pair(client, "newest first", records * 9 // 10),
                *_pair(client, "one state", per_state * 9 // 10, state="succeeded"),
                *_pair(
                    client,
                    "one queue and state",
                    per_queue_state * 9 // 10,
                    queue="evaluations.batch",
                    state="dead_lettered",
                ),
            ]
        finally:
            client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    for row in run(parser.parse_args().records):
        print(row)
