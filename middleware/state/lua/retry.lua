-- retry: settle a failed attempt's delivery by rescheduling the job, atomically: if this worker
-- still holds the delivery, ack it, put the retry on the queue's delay queue, write the job's
-- state and append the attempt to its timeline. Returns 1, or 0 (writing nothing) when the
-- delivery is no longer held here (already settled, or requeued after a heartbeat timeout).
--
-- KEYS[1] acks             Dramatiq's acks set of this worker for the delivery's queue
-- KEYS[2] queue_messages   Dramatiq's payload hash of the delivery's queue
-- KEYS[3] delay_list       Dramatiq's list of the delay queue (<queue>.DQ)
-- KEYS[4] delay_messages   Dramatiq's payload hash of the delay queue
-- KEYS[5] job_key          the job's state hash
-- KEYS[6] attempts_key     the job's attempt timeline
--
-- ARGV[1]  held_id        the delivery's redis message id
-- ARGV[2]  retry_id       the retry's redis message id
-- ARGV[3]  retry_data     the encoded retry message
-- ARGV[4]  attempt_n      the number of the attempt that ended
-- ARGV[5]  attempt_json   its timeline entry
-- ARGV[6]  category       the failure's category
-- ARGV[7]  retry_at       when the retry is due, ms since the epoch
-- ARGV[8]  error_type     the root cause's type
-- ARGV[9]  error_message  the root cause's message
-- ARGV[10] ttl_s          life of the job's records, in seconds
-- ARGV[11] state          the job's state until then (jobs.RETRYING, or jobs.QUEUED when throttled)
-- ARGV[12] job_id         the job's id
-- ARGV[13] enqueued_at    its message timestamp (ms), for a job not in the job index yet
-- ARGV[14] JOB_INDEX      prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
local acks, queue_messages, delay_list, delay_messages = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_key, attempts_key = KEYS[5], KEYS[6]
local held_id = ARGV[1]
local retry_id = ARGV[2]
local retry_data = ARGV[3]
local attempt_n = ARGV[4]
local attempt_json = ARGV[5]
local category = ARGV[6]
local retry_at = ARGV[7]
local error_type = ARGV[8]
local error_message = ARGV[9]
local ttl_s = ARGV[10]
local state = ARGV[11]
local job_id = ARGV[12]
local enqueued_at = ARGV[13]
local JOB_INDEX = ARGV[14]

-- @include settle
-- @include enqueue
-- @include job_index

if not held(acks, held_id) then return 0 end
release(acks, queue_messages, held_id)
enqueue(delay_list, delay_messages, retry_id, retry_data)
local before = indexed_fields(job_key)
index_job(job_id, enqueued_at, before, {queue = before.queue, actor = before.actor,
  state = state, category = category}, false)
-- The retry's delivery id: the dashboard reads the waiting job's payload from the delay queue.
redis.call('HSET', job_key, 'state', state, 'category', category, 'retry_at', retry_at,
           'error_type', error_type, 'error_message', error_message, 'redis_message_id', retry_id)
redis.call('EXPIRE', job_key, ttl_s)
redis.call('HSET', attempts_key, attempt_n, attempt_json)
redis.call('EXPIRE', attempts_key, ttl_s)
return 1
