-- send: Dramatiq's enqueue of one message and, for a job entering the broker for the first time,
-- its `queued` record and job index entries, in one step (EvalqRedisBroker.enqueue: an actor's
-- send() costs one round trip, as in Dramatiq). Returns 1; 0, writing nothing, when this
-- delivery is in its queue already (the same send, resent after its reply was lost).
--
-- KEYS[1] queue_list       Dramatiq's list of the queue's message ids (or the delay queue's)
-- KEYS[2] queue_messages   Dramatiq's hash of that queue's payloads
-- KEYS[3] job_key          the job's state hash
--
-- ARGV[1] redis_message_id  the delivery id of the message
-- ARGV[2] data              the encoded Dramatiq message
-- ARGV[3] record            1 to record the job as new, 0 for a message whose job is known
--                           (a retry or a delayed message coming due)
-- ARGV[4] job_id            the job's id
-- ARGV[5] ttl_s             life of the job's record, in seconds
-- ARGV[6] enqueued_at       ms since the epoch (the job's score in the job index)
-- ARGV[7] JOB_INDEX         prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
-- ARGV[8] state             a new job's state (jobs.QUEUED)
-- ARGV[9] queue             the job's queue (without the delay queue's suffix)
-- ARGV[10] actor            the actor that runs it
local queue_list, queue_messages, job_key = KEYS[1], KEYS[2], KEYS[3]
local redis_message_id = ARGV[1]
local data = ARGV[2]
local record = ARGV[3]
local job_id = ARGV[4]
local ttl_s = ARGV[5]
local enqueued_at = ARGV[6]
local JOB_INDEX = ARGV[7]
local state = ARGV[8]
local queue = ARGV[9]
local actor = ARGV[10]

-- @include enqueue
-- @include job_index

if not enqueue_once(queue_list, queue_messages, redis_message_id, data) then return 0 end
if record == '1' then
  write_job(job_key, job_id, enqueued_at, ttl_s, {'state', state, 'queue', queue,
    'actor', actor, 'enqueued_at', enqueued_at, 'redis_message_id', redis_message_id})
elseif redis.call('EXISTS', job_key) == 1 then
  -- The job's current delivery, where the dashboard reads a waiting job's payload (a retry
  -- coming due from its delay queue is enqueued under a new id).
  redis.call('HSET', job_key, 'redis_message_id', redis_message_id)
end
return 1
