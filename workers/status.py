"""A snapshot of queues, dead letters and workers, read from Redis (contract of `evalq status`)."""

from __future__ import annotations

from typing import Any

import redis

from middleware.state import keys
from middleware.state.dead_letters import DeadLetters
from middleware.worker_registry import live_workers
from workers.lanes import QUEUES


def queues_in_use(client: redis.Redis) -> list[str]:
    """The queues that hold messages in Redis (ready, delayed, running or nacked), the lanes' and
    custom ones alike, sorted; a delay queue counts as its queue. One SCAN over Dramatiq's keys:
    for an operator's command, never on a job's path."""
    prefix = f"{keys.DRAMATIQ_NAMESPACE}:"
    found: set[str] = set()
    for raw in client.scan_iter(match=f"{prefix}*", count=1000):
        name = keys.text(raw).removeprefix(prefix)
        if name.startswith("__"):  # __acks__, __heartbeats__: bookkeeping, not queues
            continue
        for suffix in (".msgs", ".XQ"):
            name = name.removesuffix(suffix)
        found.add(name.removesuffix(".DQ"))
    return sorted(found)


def collect_status(
    client: redis.Redis, dead_letters: DeadLetters, *, queues: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Counts per queue, dead letters by category (with what retention evicted) and live workers.

    ``queues``: the lanes' queues, then every other queue that holds messages or dead letters
    (``queues_in_use``), unless given.

    A queue's ``throttled`` counts attempts turned back by evalq's own provider rate limits since
    the metrics were last cleared (re-delayed, not failed). ``nacked`` counts messages in
    Dramatiq's own dead set: only a job the error policy could not settle at all (a bug, or an
    unexpected Redis error) lands there, so anything but 0 needs a look.
    """
    stats = dead_letters.stats()
    if queues is None:
        extra = set(queues_in_use(client)) | {q for q, n in stats["by_queue"].items() if n}
        queues = (*QUEUES, *sorted(extra - set(QUEUES)))
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        delay_queue = keys.delay_queue_name(queue)
        pipe.llen(keys.queue_key(queue))
        pipe.hlen(keys.queue_messages_key(queue))
        pipe.hlen(keys.queue_messages_key(delay_queue))
        pipe.hget(keys.METRICS_KEY, f"throttled:{queue}")
        pipe.zcard(keys.nacked_key(queue))
        pipe.zcard(keys.nacked_key(delay_queue))
    replies = pipe.execute()

    by_queue: dict[str, dict[str, int]] = {}
    for index, queue in enumerate(queues):
        ready, stored, delayed, throttled, nacked, nacked_delayed = replies[
            index * 6 : index * 6 + 6
        ]
        by_queue[queue] = {
            "ready": ready,
            # Fetched by a worker and not yet acknowledged: running, or prefetched to run next.
            "running": max(stored - ready, 0),
            "delayed": delayed,
            "dead_lettered": stats["by_queue"].get(queue, 0),
            "throttled": int(throttled or 0),
            "nacked": nacked + nacked_delayed,
        }
    return {
        "queues": by_queue,
        "dlq": {
            "total": stats["total"],
            "by_category": stats["by_category"],
            "overflow": stats["overflow"],
            "expired": stats["expired"],
        },
        "workers": live_workers(client),
    }
