-- dead_letter_trim: apply the dead-letter store's retention without a new record (bounded
-- like a write). Returns how many records were evicted.
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
-- ARGV[5] cutoff_prefix   record ids below this have expired
-- ARGV[6] max_records     most records kept
-- ARGV[7] budget          most records evicted by this call
local INDEX_ALL, COUNT_BY_CATEGORY, COUNT_BY_QUEUE, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RECORD_PREFIX, QUEUE_INDEX, CATEGORY_INDEX, QC_INDEX = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cutoff_prefix = ARGV[5]
local max_records = tonumber(ARGV[6])
local budget = tonumber(ARGV[7])

-- @include dead_letter_store

return enforce_retention(cutoff_prefix, max_records, budget)
