-- start: count a new attempt of a job and record it running, in one step (History.start_attempt:
-- the worker's one synchronous write per attempt). Returns {attempt number, 1 if an operator
-- asked to abort the job else 0, the worker and start time of the job's previous start ('' when
-- none)}: when that start never got an outcome, its worker died, and the timeline names it.
--
-- KEYS[1] counter     the job's attempt counter
-- KEYS[2] job_key     the job's state hash
-- KEYS[3] abort_key   the job's abort request
--
-- ARGV[1] job_id          the job's id
-- ARGV[2] ttl_s           life of the job's records, in seconds
-- ARGV[3] queue           the queue it was fetched from
-- ARGV[4] actor           the actor that runs it
-- ARGV[5] started_at      ms since the epoch
-- ARGV[6] running_until   when the attempt's time limit has certainly passed (ms)
-- ARGV[7] running         the state of a running job (jobs.RUNNING)
-- ARGV[8] enqueued_at     its message timestamp (ms), for a job not in the job index yet
-- ARGV[9] JOB_INDEX       prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
-- ARGV[10] worker         the worker process running the attempt (host:pid)
-- ARGV[11] message_id     the delivery's redis message id (its payload, for the dashboard)
local counter, job_key, abort_key = KEYS[1], KEYS[2], KEYS[3]
local job_id = ARGV[1]
local ttl_s = ARGV[2]
local queue = ARGV[3]
local actor = ARGV[4]
local started_at = ARGV[5]
local running_until = ARGV[6]
local running = ARGV[7]
local enqueued_at = ARGV[8]
local JOB_INDEX = ARGV[9]
local worker = ARGV[10]
local message_id = ARGV[11]

-- @include job_index

local n = redis.call('INCR', counter)
redis.call('EXPIRE', counter, ttl_s)
local before, previous = indexed_fields(job_key, 'worker', 'started_at')
index_job(job_id, enqueued_at, before,
  {queue = queue, actor = actor, state = running, category = before.category}, false)
-- The timeline entry is written with the outcome; a crash leaves only the counter and the
-- running state behind, which is exactly what crash detection reads.
redis.call('HSET', job_key, 'state', running, 'queue', queue, 'actor', actor,
           'started_at', started_at, 'running_until', running_until, 'worker', worker,
           'redis_message_id', message_id)
redis.call('EXPIRE', job_key, ttl_s)
return {n, redis.call('EXISTS', abort_key), previous[1] or '', previous[2] or ''}
