-- dead_letter_redrive: put a dead job back on a queue and remove its record, atomically; the
-- job is queued again, any abort request of it is cleared. Returns 1, or 0 when the record is
-- already gone.
--
-- KEYS[1] INDEX_ALL          index of every dead letter (keys.DLQ_INDEX_ALL)
-- KEYS[2] COUNT_BY_CATEGORY  hash: category -> dead letters
-- KEYS[3] COUNT_BY_QUEUE     hash: queue -> dead letters
-- KEYS[4] COUNTERS           hash of retention counters (overflow, expired)
-- KEYS[5]  record_key       the record's hash
-- KEYS[6]  job_key          the job's state hash
-- KEYS[7]  attempt_counter  the job's attempt counter (kept: the redriven message carries it as
--                           its attempt base, so the timeline goes on numbering)
-- KEYS[8]  queue_list       Dramatiq's list of the target queue
-- KEYS[9]  queue_messages   Dramatiq's payload hash of the target queue
-- KEYS[10] abort_key        the job's abort request (removed: a redriven job runs again)
--
-- ARGV[1] RECORD_PREFIX      prefix of a record hash (keys.DLQ_RECORD_PREFIX)
-- ARGV[2] QUEUE_INDEX        prefix of the per-queue index
-- ARGV[3] CATEGORY_INDEX     prefix of the per-category index
-- ARGV[4] QC_INDEX           prefix of the per-(queue, category) index
-- ARGV[5]  id                 the record id
-- ARGV[6]  redis_message_id   the redriven delivery's id
-- ARGV[7]  data               the encoded redriven message
-- ARGV[8]  queue              the target queue
-- ARGV[9]  now                ms since the epoch
-- ARGV[10] ttl_s              life of the job's state hash, in seconds
-- ARGV[11] queued             the job's state from now on (jobs.QUEUED)
-- ARGV[12] job_id             the job's id
-- ARGV[13] JOB_INDEX          prefix of the job index's keys (keys.JOB_INDEX_PREFIX); the job
--                             is indexed anew, enqueued at `now`
local INDEX_ALL, COUNT_BY_CATEGORY, COUNT_BY_QUEUE, COUNTERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RECORD_PREFIX, QUEUE_INDEX, CATEGORY_INDEX, QC_INDEX = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local record_key, job_key, attempt_counter = KEYS[5], KEYS[6], KEYS[7]
local queue_list, queue_messages, abort_key = KEYS[8], KEYS[9], KEYS[10]
local id = ARGV[5]
local redis_message_id = ARGV[6]
local data = ARGV[7]
local queue = ARGV[8]
local now = ARGV[9]
local ttl_s = ARGV[10]
local queued = ARGV[11]
local job_id = ARGV[12]
local JOB_INDEX = ARGV[13]

-- @include dead_letter_store
-- @include enqueue
-- @include job_index

if redis.call('EXISTS', record_key) == 0 then return 0 end
enqueue(queue_list, queue_messages, redis_message_id, data)
remove_record(id)
redis.call('DEL', abort_key)
local before = indexed_fields(job_key)
index_job(job_id, now, before, {queue = queue, actor = before.actor, state = queued}, true)
redis.call('HDEL', job_key, 'dead_letter_id', 'finished_at', 'category', 'error_type',
  'error_message', 'abort_requested_at')
redis.call('HSET', job_key, 'state', queued, 'queue', queue, 'enqueued_at', now,
  'redis_message_id', redis_message_id)
redis.call('EXPIRE', job_key, ttl_s)
return 1
