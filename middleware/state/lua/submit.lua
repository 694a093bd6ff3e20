-- submit: claim an idempotency key and enqueue a new job, unless the job holding the key makes
-- this submission its duplicate (workers/deduplication.py). Returns {holder's job id, 1} for a
-- duplicate, {new job id, 0} when the new job claimed the key and was enqueued, or when this
-- very job holds it already (a submission retried after its reply was lost, in a failover).
--
-- KEYS[1] idem_key         the idempotency key (a string: the job id of the job holding it)
-- KEYS[2] job_key          the new job's state hash
-- KEYS[3] queue_list       Dramatiq's list of the queue's message ids
-- KEYS[4] queue_messages   Dramatiq's hash of the queue's payloads
--
-- ARGV[1]  job_id            the new job's id
-- ARGV[2]  job_prefix        prefix of every job's state hash (keys.JOB_PREFIX)
-- ARGV[3]  window_ms         dedup window in ms; 0 outside window mode
-- ARGV[4]  now_ms            ms since the epoch (also the job's score in the job index)
-- ARGV[5]  stale_claim_ms    how long a holder without a state still holds its key
-- ARGV[6]  ttl_s             life of the key and of the job's record, in seconds
-- ARGV[7]  evaluation_uuid   recorded on the job, to find its result
-- ARGV[8]  target_uuid       recorded on the job, to find its result
-- ARGV[9]  key               the idempotency key without its prefix, recorded on the job
-- ARGV[10] queue             the queue the message goes to
-- ARGV[11] actor             the actor that runs it
-- ARGV[12] redis_message_id  the delivery id of the message
-- ARGV[13] data              the encoded Dramatiq message
-- ARGV[14] queued            the state of a new job (jobs.QUEUED)
-- ARGV[15] running           the state of a running job (jobs.RUNNING)
-- ARGV[16] holding_states    the holder's states that make this a duplicate, space-separated
-- ARGV[17] JOB_INDEX         prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
local idem_key, job_key, queue_list, queue_messages = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id = ARGV[1]
local job_prefix = ARGV[2]
local window_ms = tonumber(ARGV[3])
local now_ms = ARGV[4]
local stale_claim_ms = tonumber(ARGV[5])
local ttl_s = ARGV[6]
local evaluation_uuid = ARGV[7]
local target_uuid = ARGV[8]
local key = ARGV[9]
local queue = ARGV[10]
local actor = ARGV[11]
local redis_message_id = ARGV[12]
local data = ARGV[13]
local queued = ARGV[14]
local running = ARGV[15]
local holding_states = ARGV[16]
local JOB_INDEX = ARGV[17]
local now = tonumber(now_ms)

-- @include enqueue
-- @include states
-- @include job_index

local holder = redis.call('GET', idem_key)
-- The same submission again: it was enqueued, whatever its job has done since.
if holder == job_id then return {job_id, 0} end
if holder then
  local record = redis.call('HMGET', job_prefix .. holder, 'state', 'claimed_at', 'running_until')
  local state = record[1]
  local claimed = tonumber(record[2]) or 0
  -- A job still running past its time limit (plus grace) died after finishing its work, before
  -- its final state was written: it holds nothing any more.
  local died = state == running and record[3] and tonumber(record[3]) < now
  if not state then
    if claimed > now - stale_claim_ms then return {holder, 1} end
  elseif window_ms > 0 then
    if claimed > now - window_ms then return {holder, 1} end
  elseif not died and is_one_of(holding_states, state) then
    return {holder, 1}
  end
end
redis.call('SET', idem_key, job_id, 'EX', ttl_s)
-- The state is written before the message is pushed: a worker that picks it up at once
-- overwrites 'queued' with 'running', never the other way round.
redis.call('HSET', job_key, 'state', queued, 'queue', queue, 'actor', actor,
           'enqueued_at', now_ms, 'claimed_at', now_ms, 'evaluation_uuid', evaluation_uuid,
           'target_uuid', target_uuid, 'idempotency_key', key, 'redis_message_id', redis_message_id)
redis.call('EXPIRE', job_key, ttl_s)
index_job(job_id, now_ms, {}, {queue = queue, actor = actor, state = queued}, false)
enqueue(queue_list, queue_messages, redis_message_id, data)
return {job_id, 0}
