"""Cost of one page of the dead-letter queue when it holds 100,000 records, in milliseconds.

An embedded Redis is filled (pipelined) with 100,000 records over two queues and eight
categories; then one page of 50 is read newest first, filtered by category, and deep in the
listing (through the cursor of page 1,800 of 2,000), and one record is added with its ack.
Baseline, measured in the same run on the same server: ``HGETALL`` of one record.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis

from middleware.state import keys
from middleware.state.dead_letter_record import DeadLetterRecord
from middleware.state.dead_letters import AckTarget, DeadLetters
from workers.embedded_redis import EmbeddedRedis

RECORDS = 100_000
PAGE = 50
TARGET_MS = 50.0
ADD_TARGET_MS = 5.0
REPEATS = 50
QUEUES = ("evaluations.batch", "evaluations.live")
CATEGORIES = (
    "rate_limited",
    "provider_unavailable",
    "timeout",
    "invalid_model_output",
    "model_capability",
    "context_length",
    "auth",
    "unknown",
)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    + (
        '  File "/app/workers/evaluations/llm_judge.py", line 120, in judge\n'
        "    response = client.chat.completions.create(**request)\n"
    )
    * 6
    + "openai.BadRequestError: Error code: 400 - tools is not supported in this model\n"
)


def _record(i: int, start_ms: int) -> DeadLetterRecord:
    dead_at = start_ms + i
    job_id = str(uuid.uuid4())
    queue = QUEUES[i % len(QUEUES)]
    category = CATEGORIES[i % len(CATEGORIES)]
    return DeadLetterRecord.create(
        dead_at=dead_at,
        job_id=job_id,
        queue=queue,
        actor="run_batch_evaluation",
        category=category,
        rule=None,
        error_type="openai.BadRequestError",
        error_message="Error code: 400 - tools is not supported in this model",
        traceback=TRACEBACK,
        chain_types=["RuntimeError", "openai.BadRequestError"],
        attempts=[
            {
                "n": n,
                "started_at": dead_at - 1000 * (4 - n),
                "finished_at": dead_at - 1000 * (4 - n) + 800,
                "outcome": "retried" if n < 3 else "dead_lettered",
                "category": category,
                "error_type": "openai.BadRequestError",
                "error_message": "Error code: 400 - tools is not supported in this model",
            }
            for n in (1, 2, 3)
        ],
        first_failure_at=dead_at - 3000,
        last_failure_at=dead_at,
        worker_host="worker-1",
        worker_pid=4242,
        payload={
            "queue_name": queue,
            "actor_name": "run_batch_evaluation",
            "args": [
                {
                    "evaluation": {"uuid": str(uuid.uuid4()), "type": "llm", "metric": "binary"},
                    "target": {"uuid": str(uuid.uuid4()), "actual_output": "Paris " * 40},
                }
            ],
            "kwargs": {},
            "options": {"redis_message_id": str(uuid.uuid4()), "evalq_attempt": 3},
            "message_id": job_id,
            "message_timestamp": dead_at - 5000,
        },
    )


def _median_ms(call: Callable[[], Any], repeats: int = REPEATS) -> float:
    call()  # warm: script loaded, connection open
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def _deep_cursor(store: DeadLetters, depth: int) -> str:
    cursor = None
    for _ in range(depth // 1000):
        cursor = store.list(limit=1000, cursor=cursor).next_cursor
    if cursor is None:
        raise AssertionError(f"the listing is shorter than {depth} records")
    return cursor


def _row(name: str, value: float, baseline: float, target: float) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": "ms",
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 2),
        "target": target,
        "ok": value <= target,
    }


def _add_with_ack_ms(
    store: DeadLetters, client: redis.Redis, records: Iterable[DeadLetterRecord]
) -> float:
    """Median time of ``add`` with an ack of a delivery set up as Dramatiq's fetch leaves it."""
    timings = []
    for record in records:
        redis_message_id = str(uuid.uuid4())
        ack = AckTarget.for_delivery(
            broker_id="bench", queue=record.queue, redis_message_id=redis_message_id
        )
        client.hset(ack.messages_key, redis_message_id, "{}")
        client.sadd(ack.acks_key, redis_message_id)
        start = time.perf_counter()
        if not store.add(record, ack=ack):
            raise AssertionError("the delivery was not ours")
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def run() -> list[dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="evalq-bench-") as data_dir,
        EmbeddedRedis(data_dir=data_dir) as server,
    ):
        client = redis.Redis.from_url(server.url)
        try:
            store = DeadLetters(client, max_records=RECORDS)
            start_ms = int(time.time() * 1000) - 2 * RECORDS
            store.add_many(_record(i, start_ms) for i in range(RECORDS))
            if store.stats()["total"] != RECORDS:
                raise AssertionError(f"the fill left {store.stats()['total']} records")

            one_id = store.list(limit=1).records[0].id
            baseline = _median_ms(lambda: client.hgetall(keys.dlq_record_key(one_id)))
            cursor = _deep_cursor(store, depth=RECORDS * 9 // 10)
            rows = [
                _row(
                    "dlq: page of 50, newest first",
                    _median_ms(lambda: store.list(limit=PAGE)),
                    baseline,
                    TARGET_MS,
                ),
                _row(
                    "dlq: page of 50, one category",
                    _median_ms(lambda: store.list(category="timeout", limit=PAGE)),
                    baseline,
                    TARGET_MS,
                ),
                _row(
                    "dlq: page of 50 at depth 90,000 (cursor)",
                    _median_ms(lambda: store.list(limit=PAGE, cursor=cursor)),
                    baseline,
                    TARGET_MS,
                ),
            ]
            # Adding at the count limit: every add also evicts the oldest record.
            more = [_record(RECORDS + i, start_ms) for i in range(REPEATS)]
            rows.append(
                _row(
                    "dlq: add with ack, at 100,000 records",
                    _add_with_ack_ms(store, client, more),
                    baseline,
                    ADD_TARGET_MS,
                )
            )
            return rows
        finally:
            client.close()


if __name__ == "__main__":
    for row in run():
        print(row)
