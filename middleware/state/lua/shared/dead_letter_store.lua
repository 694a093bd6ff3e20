-- The dead-letter store's bookkeeping, shared by its writing scripts. The including script
-- declares these locals first (its KEYS[1..4] and ARGV[1..4]):
--   INDEX_ALL, COUNT_BY_CATEGORY, COUNT_BY_QUEUE, COUNTERS       (keys.DLQ_*)
--   RECORD_PREFIX, QUEUE_INDEX, CATEGORY_INDEX, QC_INDEX          (key prefixes, keys.DLQ_*_PREFIX)
--
-- remove_record(id)  -> 1 if a record was removed, else 0 (its index entry is dropped anyway)
-- enforce_retention(cutoff_prefix, max_records, budget) -> records evicted: age first, then
--   count; at most `budget` removals, so a write never does unbounded work.

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
