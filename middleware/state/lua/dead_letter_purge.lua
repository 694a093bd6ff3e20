-- dead_letter_purge: delete the records among the given ids that match the filters. Returns
-- how many were deleted.
--
-- KEYS[1] INDEX_ALL          index of every dead letter (keys.DLQ_INDEX_ALL)
-- KEYS[2] COUNT_BY_CATEGORY  hash: category -> dead letters
-- KEYS[3] COUNT_BY_QUEUE     hash: queue -> dead letters
-- KEYS[4] COUNTERS           hash of retention counters (overflow, expired)
--
-- ARGV[1] RECORD_PREFIX      prefix of a record hash (keys.DLQ_RECORD_PREFIX)
-- ARGV[2] QUEUE_INDEX        prefix of the per-queue index
-- ARGV[3] CATEGORY_INDEX     prefix of the per-category index
-- ARGV[4] QC_INDEX           prefix of the per-(queue, category) index
-- ARGV[5]  queue_filter      only records on this queue ('' for any)
-- ARGV[6]  category_filter   only records in this category ('' for any)
-- ARGV[7..] ids              the record ids
local INDEX_ALL, COUNT_BY_CATEGORY, COUNT_BY_QUEUE, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RECORD_PREFIX, QUEUE_INDEX, CATEGORY_INDEX, QC_INDEX = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local queue_filter = ARGV[5]
local category_filter = ARGV[6]
local FIRST_ID = 7

-- @include dead_letter_store

local removed = 0
for i = FIRST_ID, #ARGV do
  local meta = redis.call('HMGET', RECORD_PREFIX .. ARGV[i], 'queue', 'category')
  if meta[1] and (queue_filter == '' or meta[1] == queue_filter)
      and (category_filter == '' or meta[2] == category_filter) then
    removed = removed + remove_record(ARGV[i])
  end
end
return removed
