"""The dead-letter store's Lua scripts and the keys and arguments each is called with.

Every write to the store is one script, so it is atomic: a record is written, indexed and its job
acked together, and a redrive re-enqueues the job and removes its record together. Every index is
a sorted set of record ids with score 0, so a page is one lexical range query whose cost does not
depend on how many records there are. Retention is bounded by count and by age, with bounded work
per write, and every eviction is counted.

The ``*_call`` functions return ``(keys, args)`` for the matching ``*_SCRIPT``, registered with
``redis.Redis.register_script``.
"""

from __future__ import annotations

from dataclasses import dataclass

from middleware.state import keys
from middleware.state.dead_letter_record import DeadLetterRecord, record_id_prefix

Call = tuple[list[str], list[str | int | bytes]]

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
ADD_SCRIPT = (
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
local state = 'dead_lettered'
if category == 'aborted' then state = 'aborted' end
redis.call('HSET', job_key, 'state', state, 'category', category, 'dead_letter_id', id,
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
TRIM_SCRIPT = (
    _LUA_COMMON + "return enforce_retention(ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]))\n"
)

# KEYS[5] record, KEYS[6] job state, KEYS[7] attempt counter (kept: the redriven message
# carries it as its attempt base, so the timeline goes on numbering), KEYS[8] queue list,
# KEYS[9] queue message hash, KEYS[10] abort request (removed: a redriven job runs again);
# ARGV[5..] id, redis message id, message, queue, now, job ttl
REDRIVE_SCRIPT = (
    _LUA_COMMON
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
redis.call('HSET', KEYS[9], ARGV[6], ARGV[7])
redis.call('RPUSH', KEYS[8], ARGV[6])
remove_record(ARGV[5])
redis.call('DEL', KEYS[10])
redis.call('HDEL', KEYS[6], 'dead_letter_id', 'finished_at', 'category', 'error_type',
  'error_message', 'abort_requested_at')
redis.call('HSET', KEYS[6], 'state', 'queued', 'queue', ARGV[8], 'enqueued_at', ARGV[9])
redis.call('EXPIRE', KEYS[6], ARGV[10])
return 1
"""
)

# ARGV[5..] queue filter ('' for any), category filter ('' for any), ids...
PURGE_SCRIPT = (
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
PAGE_SCRIPT = """
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
    return call_keys, [*_COMMON_ARGS, record_id, redis_message_id, data, queue, now_ms, job_ttl_s]


def purge_call(ids: list[str], queue: str | None, category: str | None) -> Call:
    """Remove the records among ``ids`` on ``queue`` in ``category`` (None: any)."""
    return list(_COMMON_KEYS), [*_COMMON_ARGS, queue or "", category or "", *ids]


def page_call(index: str, upper: str, lower: str, limit: int) -> Call:
    """Up to ``limit`` records of ``index``, newest first, between lexical bounds ``upper`` and
    ``lower``; the script returns ``[more, id, json, id, json, ...]``."""
    return [index], [keys.DLQ_RECORD_PREFIX, upper, lower, limit]
