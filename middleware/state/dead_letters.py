"""evalq's dead-letter queue: the single record of a dead job, kept in Redis.

A record is written, indexed and the job acked in one atomic step, so a job leaves the broker
only once its record exists. Records are ordered by id (milliseconds of death, then a random
suffix) and listed newest first, a page at a time. The record itself is in
``middleware.state.dead_letter_record``; the Lua scripts that keep indexes, counts and retention in
step are ``lua/dead_letter_*.lua``, called with the arguments that
``middleware.state.dead_letter_scripts`` builds.
"""

from __future__ import annotations

import base64
import binascii
import builtins
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypedDict, cast

import redis

from middleware.state import dead_letter_scripts as scripts
from middleware.state import keys
from middleware.state.dead_letter_record import (
    RECORD_ID_RE,
    DeadLetterRecord,
    record_id_prefix,
    redrive_message,
    redrive_refusal,
)
from middleware.state.group_commit import GroupCommit
from middleware.state.posted_calls import Landed
from middleware.state.scripts import scripts_for

#: Largest page ``list`` returns.
MAX_PAGE_SIZE: Final = 1_000

_WALK_PAGE_SIZE = 200


@dataclass(frozen=True)
class AckTarget:
    """The broker delivery a dead letter settles: Dramatiq's ack of it is done with the write.

    Parameters:
      acks_key: Dramatiq's set of deliveries held by the consumer (``keys.acks_key``).
      messages_key: Dramatiq's payload hash of the queue (``keys.queue_messages_key``).
      redis_message_id: ``message.options["redis_message_id"]`` of the delivery.
    """

    acks_key: str
    messages_key: str
    redis_message_id: str

    @classmethod
    def for_delivery(cls, *, broker_id: str, queue: str, redis_message_id: str) -> AckTarget:
        """The target for a delivery fetched by broker ``broker_id`` from ``queue``."""
        return cls(
            keys.acks_key(broker_id, queue), keys.queue_messages_key(queue), redis_message_id
        )


@dataclass(frozen=True)
class Page:
    """One page of dead letters, newest first; ``next_cursor`` is None on the last page."""

    records: list[DeadLetterRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class RedriveOutcome:
    """What happened to one record on redrive. ``queue`` is where it went (or would go)."""

    id: str
    job_id: str | None
    queue: str | None
    redriven: bool
    reason: str | None = None


class DeadLetterStats(TypedDict):
    """Counts kept by the store: none of them is computed by a scan."""

    total: int
    by_category: dict[str, int]
    by_queue: dict[str, int]
    overflow: int
    expired: int


class DeadLetters:
    """Writes, lists, redrives and purges dead-letter records in Redis.

    Parameters:
      client(redis.Redis): The Redis the broker uses (bytes or decoded responses).
      max_records(int): Most records kept; the oldest beyond it are evicted and counted as
        ``overflow``. Default 100,000.
      max_age_s(int): Records older than this, in seconds, are evicted and counted as
        ``expired``. Default 14 days. A dead job's state hash is kept as long.
      max_evictions_per_write(int): Most records one ``add`` (or ``trim``) evicts. Default 100.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_records: int = 100_000,
        max_age_s: int = 14 * 24 * 3600,
        max_evictions_per_write: int = 100,
    ) -> None:
        for name, value in (
            ("max_records", max_records),
            ("max_age_s", max_age_s),
            ("max_evictions_per_write", max_evictions_per_write),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.client = client
        self.max_records = max_records
        self.max_age_s = max_age_s
        self.max_evictions_per_write = max_evictions_per_write
        registered = scripts_for(client)
        self._add_script = registered.dead_letter_add
        self._trim_script = registered.dead_letter_trim
        self._redrive_script = registered.dead_letter_redrive
        self._purge_script = registered.dead_letter_purge
        self._page_script = registered.dead_letter_page

    def add(self, record: DeadLetterRecord, *, ack: AckTarget | None = None) -> bool:
        """Store ``record`` (redacted) and, with ``ack``, ack the delivery in the same step.

        Returns False, having written nothing, when ``ack`` is given and the delivery is no
        longer held by its consumer (already acked or requeued): someone else owns the job.
        Also marks the job's state ``dead_lettered`` and evicts what retention requires, with
        ``record.dead_at`` as the current time.
        """
        call_keys, call_args = self._add_call(record, ack)
        return bool(self._add_script(call_keys, call_args))

    def post(
        self,
        record: DeadLetterRecord,
        *,
        ack: AckTarget,
        commits: GroupCommit,
        done: Landed,
    ) -> None:
        """``add`` through ``commits`` (a worker's group commit, on this store's client),
        posted: the calling thread does not wait; ``done`` gets the script's reply (0: not
        written), or its final error (``GroupCommit.post``)."""
        call_keys, call_args = self._add_call(record, ack)
        commits.post(self._add_script, keys=call_keys, args=call_args, done=done)

    def add_many(self, records: Iterable[DeadLetterRecord], *, batch_size: int = 1_000) -> int:
        """Store records without acks, pipelined in batches; returns how many were written."""
        written = 0
        batch: builtins.list[DeadLetterRecord] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_size:
                written += self._add_batch(batch)
                batch = []
        if batch:
            written += self._add_batch(batch)
        return written

    def _add_batch(self, batch: builtins.list[DeadLetterRecord]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for record in batch:
            call_keys, call_args = self._add_call(record, None)
            self._add_script(call_keys, call_args, client=pipe)
        return sum(1 for result in pipe.execute() if result)

    def _add_call(self, record: DeadLetterRecord, ack: AckTarget | None) -> scripts.Call:
        held = None if ack is None else (ack.acks_key, ack.messages_key, ack.redis_message_id)
        return scripts.add_call(record.redacted(), self._retention(), held)

    def _retention(self) -> scripts.Retention:
        return scripts.Retention(self.max_records, self.max_age_s, self.max_evictions_per_write)

    def trim(self, *, now_ms: int) -> int:
        """Apply retention now (bounded like ``add``); returns how many records were evicted."""
        return int(self._trim_script(*scripts.trim_call(self._retention(), now_ms=now_ms)))

    def get(self, record_id: str) -> DeadLetterRecord | None:
        """The record with this id, or None."""
        if not RECORD_ID_RE.fullmatch(record_id):
            return None
        raw = cast("bytes | str | None", self.client.hget(keys.dlq_record_key(record_id), "json"))
        return None if raw is None else DeadLetterRecord.model_validate_json(raw)

    def list(
        self,
        *,
        queue: str | None = None,
        category: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """One page of records, newest first, dead between ``since_ms`` and ``until_ms``
        (inclusive). Pass the previous page's ``next_cursor`` to get the next page.

        Raises:
          ValueError: ``limit`` is not in 1..1000, or ``cursor`` is not one this store gave.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
        upper = "+" if until_ms is None else "(" + record_id_prefix(until_ms + 1)
        if cursor is not None:
            after = _decode_cursor(cursor)
            if upper == "+" or after < upper[1:]:
                upper = "(" + after
        lower = "-" if since_ms is None else "[" + record_id_prefix(since_ms)
        index = keys.dlq_index_key(queue, category)
        reply = self._page_script(*scripts.page_call(index, upper, lower, limit))
        records = [
            DeadLetterRecord.model_validate_json(raw) for raw in reply[2::2] if raw is not None
        ]
        ids = [keys.text(raw) for raw in reply[1::2]]
        more = bool(reply[0]) and bool(ids)
        return Page(records=records, next_cursor=_encode_cursor(ids[-1]) if more else None)

    def count(
        self,
        *,
        queue: str | None = None,
        category: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> int:
        """How many records ``list`` would return over all its pages with these filters: one
        ``ZLEXCOUNT`` on the filter's index, whatever the store's size."""
        upper = "+" if until_ms is None else "(" + record_id_prefix(until_ms + 1)
        lower = "-" if since_ms is None else "[" + record_id_prefix(since_ms)
        index = keys.dlq_index_key(queue, category)
        return cast(int, self.client.zlexcount(index, lower, upper))  # type: ignore[no-untyped-call]

    def redrive(
        self,
        ids: builtins.list[str] | None = None,
        *,
        queue: str | None = None,
        category: str | None = None,
        to_queue: str | None = None,
        dry_run: bool = False,
        now_ms: int,
    ) -> builtins.list[RedriveOutcome]:
        """Put records' jobs back on a queue with fresh budgets; each record atomically.

        ``ids`` None means every record on ``queue`` in ``category`` (None: any); with ``ids``,
        ``queue`` and ``category`` still filter. ``to_queue`` defaults to the record's queue.
        A redriven job keeps its message id; its message timestamp becomes ``now_ms`` (so lane
        age limits count from the redrive), its budgets are fresh (the message carries the attempt
        counter's value as its base, so the timeline goes on numbering) and its state is
        ``queued``. With ``dry_run`` nothing changes and would-be redrives have reason
        ``"dry run"``. A record whose payload had secrets redacted is not redriven.
        """
        if to_queue is not None and (not to_queue or to_queue.endswith((".DQ", ".XQ"))):
            raise ValueError(f"cannot redrive to {to_queue!r}: give a queue name")
        if ids is None:
            records: Iterable[tuple[str, DeadLetterRecord | None]] = (
                (r.id, r) for r in self._walk(queue, category)
            )
        else:
            records = ((record_id, self.get(record_id)) for record_id in ids)
        return [
            self._redrive_one(record_id, record, queue, category, to_queue, dry_run, now_ms)
            for record_id, record in records
        ]

    def _redrive_one(
        self,
        record_id: str,
        record: DeadLetterRecord | None,
        queue: str | None,
        category: str | None,
        to_queue: str | None,
        dry_run: bool,
        now_ms: int,
    ) -> RedriveOutcome:
        if record is None:
            return RedriveOutcome(record_id, None, None, False, "no such record")
        target = to_queue or record.queue
        skip = redrive_refusal(record, queue=queue, category=category, dry_run=dry_run)
        if skip is not None:
            return RedriveOutcome(record_id, record.job_id, target, False, skip)
        base = int(self.client.get(keys.attempt_counter_key(record.job_id)) or 0)  # type: ignore[arg-type]
        redis_message_id, data = redrive_message(record, target, now_ms=now_ms, attempt_base=base)
        call = scripts.redrive_call(
            record_id,
            record.job_id,
            target,
            redis_message_id=redis_message_id,
            data=data,
            now_ms=now_ms,
            job_ttl_s=self.max_age_s,
        )
        done = self._redrive_script(*call)
        if not done:
            return RedriveOutcome(record_id, record.job_id, target, False, "no such record")
        return RedriveOutcome(record_id, record.job_id, target, True)

    def purge(
        self,
        ids: builtins.list[str] | None = None,
        *,
        queue: str | None = None,
        category: str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete records: ``ids``, or every record on ``queue`` in ``category`` (None: any).

        With ``ids``, ``queue`` and ``category`` still filter. Returns how many records were
        (with ``dry_run``: would be) deleted.
        """
        if ids is None:
            index = keys.dlq_index_key(queue, category)
            if dry_run:
                return cast(int, self.client.zcard(index))
            removed = 0
            for batch in self._walk_ids(index):
                removed += self._purge_batch(batch, None, None)
            return removed
        valid = [record_id for record_id in ids if RECORD_ID_RE.fullmatch(record_id)]
        if dry_run:
            pipe = self.client.pipeline(transaction=False)
            for record_id in valid:
                pipe.hmget(keys.dlq_record_key(record_id), ["queue", "category"])
            return sum(
                1
                for found_queue, found_category in pipe.execute()
                if found_queue is not None
                and (queue is None or keys.text(found_queue) == queue)
                and (category is None or keys.text(found_category) == category)
            )
        batches = (valid[i : i + 500] for i in range(0, len(valid), 500))
        return sum(self._purge_batch(batch, queue, category) for batch in batches)

    def _purge_batch(self, ids: builtins.list[str], queue: str | None, category: str | None) -> int:
        if not ids:
            return 0
        return int(self._purge_script(*scripts.purge_call(ids, queue, category)))

    def stats(self) -> DeadLetterStats:
        """Totals by category and queue, and the retention counters."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zcard(keys.DLQ_INDEX_ALL)
        pipe.hgetall(keys.DLQ_COUNT_BY_CATEGORY)
        pipe.hgetall(keys.DLQ_COUNT_BY_QUEUE)
        pipe.hmget(keys.DLQ_COUNTERS, ["overflow", "expired"])
        total, by_category, by_queue, (overflow, expired) = pipe.execute()
        return {
            "total": int(total),
            "by_category": {keys.text(k): int(v) for k, v in sorted(by_category.items())},
            "by_queue": {keys.text(k): int(v) for k, v in sorted(by_queue.items())},
            "overflow": int(overflow or 0),
            "expired": int(expired or 0),
        }

    def _walk(self, queue: str | None, category: str | None) -> Iterator[DeadLetterRecord]:
        # Records removed behind the cursor (by a redrive in progress) do not disturb the walk.
        cursor = None
        while True:
            page = self.list(queue=queue, category=category, limit=_WALK_PAGE_SIZE, cursor=cursor)
            yield from page.records
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _walk_ids(self, index: str) -> Iterator[builtins.list[str]]:
        upper = "+"
        while True:
            raw = cast(
                "list[bytes | str]",
                self.client.zrevrangebylex(index, upper, "-", start=0, num=500),
            )
            if not raw:
                return
            batch = [keys.text(record_id) for record_id in raw]
            yield batch
            upper = "(" + batch[-1]


def _encode_cursor(record_id: str) -> str:
    return base64.urlsafe_b64encode(record_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        record_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        record_id = ""
    if not RECORD_ID_RE.fullmatch(record_id):
        raise ValueError(
            f"invalid dead-letter cursor {cursor!r}: pass the next_cursor of a previous page, "
            "or no cursor for the first page"
        )
    return record_id
