-- dead_letter_add: write one dead letter (already redacted), index and count it, mark its job
-- dead, and with a held delivery ack that delivery, all in one step; then apply retention.
-- Returns 1, or 0 (writing nothing) when the delivery is no longer held by this worker; an
-- error when the record already exists.
--
-- KEYS[1] INDEX_ALL          index of every dead letter (keys.DLQ_INDEX_ALL)
-- KEYS[2] COUNT_BY_CATEGORY  hash: category -> dead letters
-- KEYS[3] COUNT_BY_QUEUE     hash: queue -> dead letters
-- KEYS[4] COUNTERS           hash of retention counters (overflow, expired)
-- KEYS[5] record_key       the record's hash
-- KEYS[6] job_key          the job's state hash
-- KEYS[7] acks             (with a delivery) Dramatiq's acks set holding it
-- KEYS[8] queue_messages   (with a delivery) Dramatiq's payload hash of its queue
--
-- ARGV[1] RECORD_PREFIX      prefix of a record hash (keys.DLQ_RECORD_PREFIX)
-- ARGV[2] QUEUE_INDEX        prefix of the per-queue index
-- ARGV[3] CATEGORY_INDEX     prefix of the per-category index
-- ARGV[4] QC_INDEX           prefix of the per-(queue, category) index
-- ARGV[5]  id                 the record id
-- ARGV[6]  queue              the job's queue
-- ARGV[7]  category           the category it died of
-- ARGV[8]  json               the record
-- ARGV[9]  dead_at            ms since the epoch
-- ARGV[10] ttl_s              life of the job's state hash, in seconds
-- ARGV[11] cutoff_prefix      record ids below this have expired
-- ARGV[12] max_records        most records kept
-- ARGV[13] budget             most records this write evicts
-- ARGV[14] error_type         the root cause's type
-- ARGV[15] error_message      the root cause's message
-- ARGV[16] state              the job's state from now on (jobs.dead_state)
-- ARGV[17] job_id             the job's id
-- ARGV[18] enqueued_at        its message timestamp (ms), for a job not in the job index yet
-- ARGV[19] JOB_INDEX          prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
-- ARGV[20] redis_message_id   (with a delivery) the delivery to ack
local INDEX_ALL, COUNT_BY_CATEGORY, COUNT_BY_QUEUE, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RECORD_PREFIX, QUEUE_INDEX, CATEGORY_INDEX, QC_INDEX = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local record_key, job_key, acks, queue_messages = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id = ARGV[5]
local queue = ARGV[6]
local category = ARGV[7]
local json = ARGV[8]
local dead_at = ARGV[9]
local ttl_s = ARGV[10]
local cutoff_prefix = ARGV[11]
local max_records = tonumber(ARGV[12])
local budget = tonumber(ARGV[13])
local error_type = ARGV[14]
local error_message = ARGV[15]
local state = ARGV[16]
local job_id = ARGV[17]
local enqueued_at = ARGV[18]
local JOB_INDEX = ARGV[19]
local redis_message_id = ARGV[20]

-- @include dead_letter_store
-- @include settle
-- @include job_index

if acks and not held(acks, redis_message_id) then return 0 end
if redis.call('EXISTS', record_key) == 1 then
  return redis.error_reply('dead letter ' .. id .. ' already exists')
end
redis.call('HSET', record_key, 'queue', queue, 'category', category, 'json', json)
redis.call('ZADD', INDEX_ALL, 0, id)
redis.call('ZADD', QUEUE_INDEX .. queue, 0, id)
redis.call('ZADD', CATEGORY_INDEX .. category, 0, id)
redis.call('ZADD', QC_INDEX .. queue .. ':' .. category, 0, id)
redis.call('HINCRBY', COUNT_BY_QUEUE, queue, 1)
redis.call('HINCRBY', COUNT_BY_CATEGORY, category, 1)
local before = indexed_fields(job_key)
index_job(job_id, enqueued_at, before, {queue = before.queue, actor = before.actor,
  state = state, category = category}, false)
redis.call('HSET', job_key, 'state', state, 'category', category, 'dead_letter_id', id,
  'finished_at', dead_at, 'error_type', error_type, 'error_message', error_message)
redis.call('EXPIRE', job_key, ttl_s)
if acks then release(acks, queue_messages, redis_message_id) end
enforce_retention(cutoff_prefix, max_records, budget)
return 1
