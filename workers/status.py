"""A snapshot of queues, dead letters and workers, read from Redis (contract of `evalq status`)."""

from __future__ import annotations

from typing import Any

import redis

from middleware.worker_registry import live_workers
from workers.actors import QUEUES
from workers.bootstrap import DRAMATIQ_NAMESPACE


def collect_status(client: redis.Redis, *, queues: tuple[str, ...] = QUEUES) -> dict[str, Any]:
    """Counts per queue, dead letters and live workers."""
    ns = DRAMATIQ_NAMESPACE
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(f"{ns}:{queue}")
        pipe.hlen(f"{ns}:{queue}.msgs")
        pipe.hlen(f"{ns}:{queue}.DQ.msgs")
        pipe.zcard(f"{ns}:{queue}.XQ")
    replies = pipe.execute()

    by_queue: dict[str, dict[str, int]] = {}
    for index, queue in enumerate(queues):
        ready, stored, delayed, dead = replies[index * 4 : index * 4 + 4]
        by_queue[queue] = {
            "ready": ready,
            # Fetched by a worker and not yet acknowledged: running, or prefetched to run next.
            "running": max(stored - ready, 0),
            "delayed": delayed,
            "dead_lettered": dead,
        }
    dead_total = sum(q["dead_lettered"] for q in by_queue.values())
    return {
        "queues": by_queue,
        "dlq": {"total": dead_total, "by_category": {}, "overflow": 0},
        "workers": live_workers(client),
    }
