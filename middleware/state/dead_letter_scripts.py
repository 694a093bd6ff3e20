"""The keys and arguments the dead-letter store's Lua scripts (``lua/dead_letter_*.lua``) take.

Every write to the store is one script, so it is atomic: a record is written, indexed and its job
acked together, and a redrive re-enqueues the job and removes its record together. Every index is
a sorted set of record ids with score 0, so a page is one lexical range query whose cost does not
depend on how many records there are. Retention is bounded by count and by age, with bounded work
per write, and every eviction is counted.

Each ``*_call`` function returns ``(keys, args)`` for the script of its name
(``middleware.state.scripts``): ``add_call`` for ``dead_letter_add``, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass

from middleware.state import keys
from middleware.state.dead_letter_record import DeadLetterRecord, record_id_prefix
from middleware.state.job_states import QUEUED, dead_state

Call = tuple[list[str], list[str | int | bytes]]

_COMMON_KEYS = (
    keys.DLQ_INDEX_ALL,
    keys.DLQ_COUNT_BY_CATEGORY,
    keys.DLQ_COUNT_BY_QUEUE,
    keys.DLQ_COUNTERS,
)
_COMMON_ARGS = (
    keys.DLQ_RECORD_PREFIX,
    keys.DLQ_INDEX_QUEUE_PREFIX,
    keys.DLQ_INDEX_CATEGORY_PREFIX,
    keys.DLQ_INDEX_QUEUE_CATEGORY_PREFIX,
)


@dataclass(frozen=True)
class Retention:
    """What the store keeps: at most ``max_records``, none older than ``max_age_s`` (seconds),
    evicting at most ``max_evictions_per_write`` records per write."""

    max_records: int
    max_age_s: int
    max_evictions_per_write: int

    def cutoff(self, now_ms: int) -> str:
        """The id prefix below which a record has expired at ``now_ms``."""
        return record_id_prefix(max(now_ms - self.max_age_s * 1000, 0))


def add_call(
    stored: DeadLetterRecord, retention: Retention, held: tuple[str, str, str] | None
) -> Call:
    """Write ``stored`` (already redacted), mark its job dead-lettered and apply retention.

    ``held`` is the delivery to ack in the same step: Dramatiq's acks key, the queue's message
    hash key and the delivery's redis message id; the script writes nothing (returns 0) when the
    delivery is no longer in the acks set.
    """
    call_keys = [*_COMMON_KEYS, keys.dlq_record_key(stored.id), keys.job_key(stored.job_id)]
    call_args: list[str | int | bytes] = [
        *_COMMON_ARGS,
        stored.id,
        stored.queue,
        stored.category,
        stored.model_dump_json(),
        stored.dead_at,
        retention.max_age_s,
        retention.cutoff(stored.dead_at),
        retention.max_records,
        retention.max_evictions_per_write,
        stored.error_type,
        stored.error_message,
        dead_state(stored.category),
        stored.job_id,
        stored.payload.get("message_timestamp") or "",
        keys.JOB_INDEX_PREFIX,
    ]
    if held is not None:
        acks_key, messages_key, redis_message_id = held
        call_keys += [acks_key, messages_key]
        call_args.append(redis_message_id)
    return call_keys, call_args


def trim_call(retention: Retention, *, now_ms: int) -> Call:
    """Apply retention as of ``now_ms``; the script returns how many records it evicted."""
    args: list[str | int | bytes] = [
        *_COMMON_ARGS,
        retention.cutoff(now_ms),
        retention.max_records,
        retention.max_evictions_per_write,
    ]
    return list(_COMMON_KEYS), args


def redrive_call(
    record_id: str,
    job_id: str,
    queue: str,
    *,
    redis_message_id: str,
    data: bytes,
    now_ms: int,
    job_ttl_s: int,
) -> Call:
    """Enqueue ``data`` (the encoded message) on ``queue``, remove record ``record_id`` of job
    ``job_id`` and any abort request of that job; the script returns 0 when the record is
    already gone."""
    call_keys = [
        *_COMMON_KEYS,
        keys.dlq_record_key(record_id),
        keys.job_key(job_id),
        keys.attempt_counter_key(job_id),
        keys.queue_key(queue),
        keys.queue_messages_key(queue),
        keys.abort_key(job_id),
    ]
    return call_keys, [
        *_COMMON_ARGS,
        record_id,
        redis_message_id,
        data,
        queue,
        now_ms,
        job_ttl_s,
        QUEUED,
        job_id,
        keys.JOB_INDEX_PREFIX,
    ]


def purge_call(ids: list[str], queue: str | None, category: str | None) -> Call:
    """Remove the records among ``ids`` on ``queue`` in ``category`` (None: any)."""
    return list(_COMMON_KEYS), [*_COMMON_ARGS, queue or "", category or "", *ids]


def page_call(index: str, upper: str, lower: str, limit: int) -> Call:
    """Up to ``limit`` records of ``index``, newest first, between lexical bounds ``upper`` and
    ``lower``; the script returns ``[more, id, json, id, json, ...]``."""
    return [index], [keys.DLQ_RECORD_PREFIX, upper, lower, limit]
