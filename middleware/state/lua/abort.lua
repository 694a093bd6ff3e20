-- abort: request an abort of one job, acting on its state (middleware/state/aborts.py). A job
-- that finished is left as it is; otherwise the abort key is set, a job that has not started
-- is marked aborted at once, and the job id is published to the workers.
-- Returns {result, state before, workers notified, queue, actor}; result is 'unknown',
-- 'finished' or 'requested'.
--
-- KEYS[1] job_key     the job's state hash
-- KEYS[2] abort_key   the job's abort request
--
-- ARGV[1] job_id              the job's id
-- ARGV[2] ttl_s               life of the abort key and of the job's record, in seconds
-- ARGV[3] channel             where abort requests are published (keys.ABORT_CHANNEL)
-- ARGV[4] now                 ms since the epoch
-- ARGV[5] terminal_states     states of a finished job, space-separated (jobs.TERMINAL_STATES)
-- ARGV[6] not_started_states  states of a job that will not run again unless picked up,
--                             space-separated (jobs.NOT_STARTED_STATES)
-- ARGV[7] queued              the state of a record without one: its submitter is still
--                             enqueueing it (jobs.QUEUED)
-- ARGV[8] aborted             the state of an aborted job (jobs.ABORTED)
-- ARGV[9] aborted_category    the category it is recorded with
-- ARGV[10] JOB_INDEX          prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
local job_key, abort_key = KEYS[1], KEYS[2]
local job_id = ARGV[1]
local ttl_s = ARGV[2]
local channel = ARGV[3]
local now = ARGV[4]
local terminal_states = ARGV[5]
local not_started_states = ARGV[6]
local queued = ARGV[7]
local aborted = ARGV[8]
local aborted_category = ARGV[9]
local JOB_INDEX = ARGV[10]

-- @include states
-- @include job_index

if redis.call('EXISTS', job_key) == 0 then return {'unknown', '', 0, '', ''} end
local found = redis.call('HMGET', job_key, 'state', 'queue', 'actor')
local state, queue, actor = found[1] or queued, found[2] or '', found[3] or ''
if is_one_of(terminal_states, state) then return {'finished', state, 0, queue, actor} end
redis.call('SET', abort_key, now, 'EX', ttl_s)
if is_one_of(not_started_states, state) then
  local before = indexed_fields(job_key)
  index_job(job_id, nil, before, {queue = before.queue, actor = before.actor, state = aborted,
    category = aborted_category}, false)
  redis.call('HSET', job_key, 'state', aborted, 'category', aborted_category,
             'abort_requested_at', now)
else
  redis.call('HSET', job_key, 'abort_requested_at', now)
end
redis.call('EXPIRE', job_key, ttl_s)
local notified = redis.call('PUBLISH', channel, job_id)
return {'requested', state, notified, queue, actor}
