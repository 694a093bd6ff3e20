-- finish: end a job's delivery with its outcome, atomically: if this worker still holds the
-- delivery, ack it, write the job's final state (succeeded, dropped) and its last attempt, and
-- keep the job index in step; so a worker killed right after can never leave an acked job
-- "running".
--
-- A delivery is no longer held when it was requeued after a heartbeat timeout (a Redis outage
-- longer than the timeout makes every worker look dead) while this attempt still ran. Another
-- delivery of the job then runs, or has run. If that one finished first and this attempt then
-- marked the job running again, no one else would ever end it: the outcome this attempt reached
-- is true, so it is written all the same. Returns 1 when it acked the delivery; 2 when the
-- delivery was no longer held but the job was still running (outcome written); 0, writing
-- nothing, when it was no longer held and the job had ended already.
--
-- KEYS[1] acks             Dramatiq's acks set of this worker for the delivery's queue
-- KEYS[2] queue_messages   Dramatiq's payload hash of the delivery's queue
-- KEYS[3] job_key          the job's state hash
-- KEYS[4] attempts_key     the job's attempt timeline
--
-- ARGV[1] held_id        the delivery's redis message id
-- ARGV[2] attempt_n      the number of the attempt that ended
-- ARGV[3] attempt_json   its timeline entry
-- ARGV[4] ttl_s          life of the job's records, in seconds
-- ARGV[5] job_id         the job's id
-- ARGV[6] enqueued_at    its message timestamp (ms), for a job not in the job index yet
-- ARGV[7] JOB_INDEX      prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
-- ARGV[8] running        the state of a running job (jobs.RUNNING)
-- ARGV[9..] fields       field, value, ... of the job's state hash, its final state among them
local acks, queue_messages, job_key, attempts_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local held_id = ARGV[1]
local attempt_n = ARGV[2]
local attempt_json = ARGV[3]
local ttl_s = ARGV[4]
local job_id = ARGV[5]
local enqueued_at = ARGV[6]
local JOB_INDEX = ARGV[7]
local running = ARGV[8]
local FIRST_FIELD = 9

-- @include settle
-- @include job_index

local outcome = 1
if held(acks, held_id) then
  release(acks, queue_messages, held_id)
elseif redis.call('HGET', job_key, 'state') == running then
  outcome = 2
else
  return 0
end
write_job(job_key, job_id, enqueued_at, ttl_s, argv_from(FIRST_FIELD))
redis.call('HSET', attempts_key, attempt_n, attempt_json)
redis.call('EXPIRE', attempts_key, ttl_s)
return outcome
