"""evalq's dead-letter queue: the single record of a dead job, kept in Redis.

A record is written, indexed and the job acked by one Lua script, so a job leaves the broker only
once its record exists. Records are ordered by id (milliseconds of death, then a random suffix);
every index is a sorted set of ids with score 0, so a page is one lexical range query whose cost
does not depend on how many records there are. Retention is bounded by count and by age, with
bounded work per write, and every eviction is counted.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypedDict, cast

import dramatiq
import redis
from pydantic import BaseModel, ConfigDict, Field

from middleware import keys
from middleware.redaction import REDACTED, redact, redact_text

#: Longest error message stored, in characters (the head is kept).
MAX_ERROR_MESSAGE_CHARS: Final = 2_000
#: Longest traceback stored, in characters (the tail, where the root cause is, is kept).
MAX_TRACEBACK_CHARS: Final = 8_000
#: Largest page ``list`` returns.
MAX_PAGE_SIZE: Final = 1_000

_ID_DIGITS = 15
_ID_RE = re.compile(r"\d{15}-[0-9a-f]{10}")
_WALK_PAGE_SIZE = 200


def _contains_redaction(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_redaction(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_contains_redaction(v) for v in value)
    return isinstance(value, str) and REDACTED in value


def new_record_id(dead_at_ms: int) -> str:
    """A record id: ``dead_at_ms`` zero-padded, then a random suffix; ids sort by time."""
    return f"{_id_prefix(dead_at_ms)}-{secrets.token_hex(5)}"


def _id_prefix(ms: int) -> str:
    if not 0 <= ms < 10**_ID_DIGITS:
        raise ValueError(f"timestamp {ms} is out of range: give milliseconds since the epoch")
    return f"{ms:0{_ID_DIGITS}d}"


class DeadLetterRecord(BaseModel):
    """Everything an operator needs to decide about a dead job. Times in ms since the epoch."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=_ID_RE.pattern)
    job_id: str
    queue: str
    actor: str
    category: str
    rule: str | None = None
    #: Why the policy dead-lettered the job, in words.
    reason: str | None = None
    error_type: str
    error_message: str
    traceback: str = ""
    chain_types: list[str] = Field(default_factory=list)
    #: Attempt timeline: ``{"n","started_at","finished_at","outcome","category","error_type",
    #: "error_message"}`` each.
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    first_failure_at: int
    last_failure_at: int
    dead_at: int
    worker_host: str
    worker_pid: int
    #: The Dramatiq message as a dict (``Message.asdict()``), secrets redacted when stored.
    payload: dict[str, Any]

    @classmethod
    def create(cls, *, dead_at: int, **fields: Any) -> DeadLetterRecord:
        """A new record with a fresh id for ``dead_at``; the other fields as keywords."""
        return cls(id=new_record_id(dead_at), dead_at=dead_at, **fields)

    def redacted(self) -> DeadLetterRecord:
        """This record as it is stored: secrets redacted, message and traceback capped."""
        return self.model_copy(
            update={
                "error_message": _cap_head(redact_text(self.error_message)),
                "traceback": _cap_tail(redact_text(self.traceback)),
                "attempts": [
                    {**a, "error_message": _cap_head(redact_text(a["error_message"]))}
                    if isinstance(a.get("error_message"), str)
                    else a
                    for a in self.attempts
                ],
                "payload": redact(self.payload),
            }
        )


def _cap_head(text: str) -> str:
    if len(text) <= MAX_ERROR_MESSAGE_CHARS:
        return text
    return text[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"


def _cap_tail(text: str) -> str:
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    dropped = len(text) - MAX_TRACEBACK_CHARS
    return f"[{dropped} characters cut]\n" + text[dropped:]


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


# Shared by every writing script. KEYS[1..4] and ARGV[1..4] are _COMMON_KEYS and _COMMON_ARGS.
_LUA_COMMON = """
local INDEX_ALL, COUNT_BY_CATEGORY, COUNT_BY_QUEUE, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RECORD_PREFIX, QUEUE_INDEX, CATEGORY_INDEX, QC_INDEX = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function decrement(hash, field)
  if redis.call('HINCRBY', hash, field, -1) <= 0 then redis.call('HDEL', hash, field) end
end

-- Index keys built as in keys.dlq_*_index_key.
local function remove_record(id)
  local record_key = RECORD_PREFIX .. id
  local meta = redis.call('HMGET', record_key, 'queue', 'category')
  redis.call('ZREM', INDEX_ALL, id)
  local queue, category = meta[1], meta[2]
  if not queue or not category then return 0 end
  redis.call('DEL', record_key)
  redis.call('ZREM', QUEUE_INDEX .. queue, id)
  redis.call('ZREM', CATEGORY_INDEX .. category, id)
  redis.call('ZREM', QC_INDEX .. queue .. ':' .. category, id)
  decrement(COUNT_BY_QUEUE, queue)
  decrement(COUNT_BY_CATEGORY, category)
  return 1
end

-- Age first, then count; at most `budget` removals, so a write never does unbounded work.
local function enforce_retention(cutoff_prefix, max_records, budget)
  local expired = redis.call('ZRANGEBYLEX', INDEX_ALL, '-', '(' .. cutoff_prefix,
    'LIMIT', 0, budget)
  for _, id in ipairs(expired) do remove_record(id) end
  if #expired > 0 then redis.call('HINCRBY', COUNTERS, 'expired', #expired) end
  budget = budget - #expired
  local excess = redis.call('ZCARD', INDEX_ALL) - max_records
  local overflow = {}
  if excess > 0 and budget > 0 then
    overflow = redis.call('ZRANGE', INDEX_ALL, 0, math.min(excess, budget) - 1)
    for _, id in ipairs(overflow) do remove_record(id) end
    redis.call('HINCRBY', COUNTERS, 'overflow', #overflow)
  end
  return #expired + #overflow
end
"""

# KEYS[5] record, KEYS[6] job state, KEYS[7] acks set, KEYS[8] message hash (7, 8 with an ack)
# ARGV[5..] id, queue, category, json, dead_at, job ttl, cutoff prefix, max records, budget,
#           error type, error message, redis message id (with an ack)
_ADD_SCRIPT = (
    _LUA_COMMON
    + """
local record_key, job_key, acks, messages = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, queue, category = ARGV[5], ARGV[6], ARGV[7]
local redis_message_id = ARGV[16]
if acks and redis.call('SISMEMBER', acks, redis_message_id) == 0 then return 0 end
if redis.call('EXISTS', record_key) == 1 then
  return redis.error_reply('dead letter ' .. id .. ' already exists')
end
redis.call('HSET', record_key, 'queue', queue, 'category', category, 'json', ARGV[8])
redis.call('ZADD', INDEX_ALL, 0, id)
redis.call('ZADD', QUEUE_INDEX .. queue, 0, id)
redis.call('ZADD', CATEGORY_INDEX .. category, 0, id)
redis.call('ZADD', QC_INDEX .. queue .. ':' .. category, 0, id)
redis.call('HINCRBY', COUNT_BY_QUEUE, queue, 1)
redis.call('HINCRBY', COUNT_BY_CATEGORY, category, 1)
redis.call('HSET', job_key, 'state', 'dead_lettered', 'category', category, 'dead_letter_id', id,
  'finished_at', ARGV[9], 'error_type', ARGV[14], 'error_message', ARGV[15])
redis.call('EXPIRE', job_key, ARGV[10])
if acks then
  redis.call('SREM', acks, redis_message_id)
  redis.call('HDEL', messages, redis_message_id)
end
enforce_retention(ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13]))
return 1
"""
)

# ARGV[5..] cutoff prefix, max records, budget
_TRIM_SCRIPT = (
    _LUA_COMMON + "return enforce_retention(ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]))\n"
)

# KEYS[5] record, KEYS[6] job state, KEYS[7] attempt counter (kept: the redriven message
# carries it as its attempt base, so the timeline goes on numbering), KEYS[8] queue list,
# KEYS[9] queue message hash; ARGV[5..] id, redis message id, message, queue, now, job ttl
_REDRIVE_SCRIPT = (
    _LUA_COMMON
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
redis.call('HSET', KEYS[9], ARGV[6], ARGV[7])
redis.call('RPUSH', KEYS[8], ARGV[6])
remove_record(ARGV[5])
redis.call('HDEL', KEYS[6], 'dead_letter_id', 'finished_at', 'category', 'error_type',
  'error_message')
redis.call('HSET', KEYS[6], 'state', 'queued', 'queue', ARGV[8], 'enqueued_at', ARGV[9])
redis.call('EXPIRE', KEYS[6], ARGV[10])
return 1
"""
)

# ARGV[5..] queue filter ('' for any), category filter ('' for any), ids...
_PURGE_SCRIPT = (
    _LUA_COMMON
    + """
local removed = 0
for i = 7, #ARGV do
  local meta = redis.call('HMGET', RECORD_PREFIX .. ARGV[i], 'queue', 'category')
  if meta[1] and (ARGV[5] == '' or meta[1] == ARGV[5])
      and (ARGV[6] == '' or meta[2] == ARGV[6]) then
    removed = removed + remove_record(ARGV[i])
  end
end
return removed
"""
)

# KEYS[1] index; ARGV record prefix, max, min, limit. Returns {more, id1, json1, id2, json2...}.
_PAGE_SCRIPT = """
local limit = tonumber(ARGV[4])
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, limit + 1)
local out = {0}
if #ids > limit then out[1] = 1 end
for i = 1, math.min(#ids, limit) do
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call('HGET', ARGV[1] .. ids[i], 'json')
end
return out
"""

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
        self._add_script = client.register_script(_ADD_SCRIPT)
        self._trim_script = client.register_script(_TRIM_SCRIPT)
        self._redrive_script = client.register_script(_REDRIVE_SCRIPT)
        self._purge_script = client.register_script(_PURGE_SCRIPT)
        self._page_script = client.register_script(_PAGE_SCRIPT)

    def add(self, record: DeadLetterRecord, *, ack: AckTarget | None = None) -> bool:
        """Store ``record`` (redacted) and, with ``ack``, ack the delivery in the same step.

        Returns False, having written nothing, when ``ack`` is given and the delivery is no
        longer held by its consumer (already acked or requeued): someone else owns the job.
        Also marks the job's state ``dead_lettered`` and evicts what retention requires, with
        ``record.dead_at`` as the current time.
        """
        written = self._add_script(*self._add_call(record, ack))
        return bool(written)

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

    def _add_call(
        self, record: DeadLetterRecord, ack: AckTarget | None
    ) -> tuple[builtins.list[str], builtins.list[str | int]]:
        stored = record.redacted()
        call_keys = [*_COMMON_KEYS, keys.dlq_record_key(stored.id), keys.job_key(stored.job_id)]
        call_args: builtins.list[str | int] = [
            *_COMMON_ARGS,
            stored.id,
            stored.queue,
            stored.category,
            stored.model_dump_json(),
            stored.dead_at,
            self.max_age_s,
            _id_prefix(max(stored.dead_at - self.max_age_s * 1000, 0)),
            self.max_records,
            self.max_evictions_per_write,
            stored.error_type,
            stored.error_message,
        ]
        if ack is not None:
            call_keys += [ack.acks_key, ack.messages_key]
            call_args.append(ack.redis_message_id)
        return call_keys, call_args

    def trim(self, *, now_ms: int) -> int:
        """Apply retention now (bounded like ``add``); returns how many records were evicted."""
        cutoff = _id_prefix(max(now_ms - self.max_age_s * 1000, 0))
        args: builtins.list[str | int] = [
            *_COMMON_ARGS,
            cutoff,
            self.max_records,
            self.max_evictions_per_write,
        ]
        return int(self._trim_script(list(_COMMON_KEYS), args))

    def get(self, record_id: str) -> DeadLetterRecord | None:
        """The record with this id, or None."""
        if not _ID_RE.fullmatch(record_id):
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
        upper = "+" if until_ms is None else "(" + _id_prefix(until_ms + 1)
        if cursor is not None:
            after = _decode_cursor(cursor)
            if upper == "+" or after < upper[1:]:
                upper = "(" + after
        lower = "-" if since_ms is None else "[" + _id_prefix(since_ms)
        index = _index_key(queue, category)
        reply = self._page_script([index], [keys.DLQ_RECORD_PREFIX, upper, lower, limit])
        records = [
            DeadLetterRecord.model_validate_json(raw) for raw in reply[2::2] if raw is not None
        ]
        ids = [_text(raw) for raw in reply[1::2]]
        more = bool(reply[0]) and bool(ids)
        return Page(records=records, next_cursor=_encode_cursor(ids[-1]) if more else None)

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
        age limits count from the redrive), its attempt counter is reset and its state is
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
        skip = None
        if queue is not None and record.queue != queue:
            skip = f"not on queue {queue}"
        elif category is not None and record.category != category:
            skip = f"not in category {category}"
        elif _contains_redaction(record.payload):
            skip = "payload has redacted secrets; enqueue the job again from its source"
        elif dry_run:
            skip = "dry run"
        if skip is not None:
            return RedriveOutcome(record_id, record.job_id, target, False, skip)
        base = int(self.client.get(keys.attempt_counter_key(record.job_id)) or 0)  # type: ignore[arg-type]
        redis_message_id, data = redrive_message(record, target, now_ms=now_ms, attempt_base=base)
        done = self._redrive_script(
            [
                *_COMMON_KEYS,
                keys.dlq_record_key(record_id),
                keys.job_key(record.job_id),
                keys.attempt_counter_key(record.job_id),
                keys.queue_key(target),
                keys.queue_messages_key(target),
            ],
            [*_COMMON_ARGS, record_id, redis_message_id, data, target, now_ms, self.max_age_s],
        )
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
            index = _index_key(queue, category)
            if dry_run:
                return cast(int, self.client.zcard(index))
            removed = 0
            for batch in self._walk_ids(index):
                removed += self._purge_batch(batch, None, None)
            return removed
        valid = [record_id for record_id in ids if _ID_RE.fullmatch(record_id)]
        if dry_run:
            pipe = self.client.pipeline(transaction=False)
            for record_id in valid:
                pipe.hmget(keys.dlq_record_key(record_id), ["queue", "category"])
            return sum(
                1
                for found_queue, found_category in pipe.execute()
                if found_queue is not None
                and (queue is None or _text(found_queue) == queue)
                and (category is None or _text(found_category) == category)
            )
        batches = (valid[i : i + 500] for i in range(0, len(valid), 500))
        return sum(self._purge_batch(batch, queue, category) for batch in batches)

    def _purge_batch(self, ids: builtins.list[str], queue: str | None, category: str | None) -> int:
        if not ids:
            return 0
        args = [*_COMMON_ARGS, queue or "", category or "", *ids]
        return int(self._purge_script(list(_COMMON_KEYS), args))

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
            "by_category": {_text(k): int(v) for k, v in sorted(by_category.items())},
            "by_queue": {_text(k): int(v) for k, v in sorted(by_queue.items())},
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
            batch = [_text(record_id) for record_id in raw]
            yield batch
            upper = "(" + batch[-1]


def redrive_message(
    record: DeadLetterRecord, queue: str, *, now_ms: int, attempt_base: int = 0
) -> tuple[str, bytes]:
    """The Redis message id and encoded Dramatiq message that redrive ``record`` on ``queue``.

    Options of the old delivery (``eta``, ``redis_message_id``) and evalq's own (``evalq_*``:
    budgets, counters) are dropped, so the job gets fresh budgets; ``evalq_attempt_base`` is the
    number of attempts it already had (its budgets count from there, its timeline goes on) and
    ``evalq_redriven`` counts the redrives.
    """
    payload = record.payload
    old_options: dict[str, Any] = payload.get("options") or {}
    options = {
        name: value
        for name, value in old_options.items()
        if name not in ("eta", "redis_message_id") and not name.startswith("evalq_")
    }
    redis_message_id = str(uuid.uuid4())
    options["evalq_redriven"] = int(old_options.get("evalq_redriven") or 0) + 1
    options["evalq_attempt_base"] = attempt_base
    options["redis_message_id"] = redis_message_id
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue,
        actor_name=payload.get("actor_name") or record.actor,
        args=tuple(payload.get("args") or ()),
        kwargs=dict(payload.get("kwargs") or {}),
        options=options,
        message_id=payload.get("message_id") or record.job_id,
        message_timestamp=now_ms,
    )
    return redis_message_id, message.encode()


def payload_from_message(message: dramatiq.Message[Any]) -> dict[str, Any]:
    """A Dramatiq message as a record's ``payload`` (before redaction)."""
    payload = message.asdict()
    payload["args"] = list(payload["args"])
    payload["options"] = dict(payload["options"])
    return payload


def _index_key(queue: str | None, category: str | None) -> str:
    if queue is not None and category is not None:
        return keys.dlq_queue_category_index_key(queue, category)
    if queue is not None:
        return keys.dlq_queue_index_key(queue)
    if category is not None:
        return keys.dlq_category_index_key(category)
    return keys.DLQ_INDEX_ALL


def _encode_cursor(record_id: str) -> str:
    return base64.urlsafe_b64encode(record_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        record_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        record_id = ""
    if not _ID_RE.fullmatch(record_id):
        raise ValueError(
            f"invalid dead-letter cursor {cursor!r}: pass the next_cursor of a previous page, "
            "or no cursor for the first page"
        )
    return record_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
