-- transition: write fields of one job's state hash and keep the job index in step
-- (History.record_enqueued, and the history flusher's buffered outcomes). Returns 1.
--
-- KEYS[1] job_key   the job's state hash
--
-- ARGV[1] job_id        the job's id
-- ARGV[2] ttl_s         life of the job's records, in seconds
-- ARGV[3] enqueued_at   its message timestamp (ms), for a job not in the job index yet
-- ARGV[4] JOB_INDEX     prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
-- ARGV[5..] fields      field, value, field, value, ... (a state, when it changes, among them)
local job_key = KEYS[1]
local job_id = ARGV[1]
local ttl_s = ARGV[2]
local enqueued_at = ARGV[3]
local JOB_INDEX = ARGV[4]
local FIRST_FIELD = 5

-- @include job_index

write_job(job_key, job_id, enqueued_at, ttl_s, argv_from(FIRST_FIELD))
return 1
