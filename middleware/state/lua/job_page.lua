-- job_page: one page of jobs from the job index, newest first (middleware/state/jobs.py:
-- search_jobs). Reads the smallest of the candidate indexes from the cursor on and checks each
-- job's record against every filter (an entry the record no longer matches is skipped), so a
-- page costs the same however many jobs there are: it stops after `limit` matches or after
-- `budget` entries read. Returns {more (0|1), last score, last id, then per job: id, score,
-- queue, actor, state, category, finished_at, error_type, error_message, dead_letter_id,
-- attempts started}; `more` says whether entries are left after the last one read.
--
-- KEYS[1..] candidates   indexes that each hold every job matching the filters
--
-- ARGV[1]  job_prefix        prefix of a job's state hash (keys.JOB_PREFIX)
-- ARGV[2]  counter_prefix    prefix of a job's attempt counter (keys.ATTEMPT_COUNTER_PREFIX)
-- ARGV[3]  upper             highest score ('+inf', or ms)
-- ARGV[4]  lower             lowest score ('-inf', or ms)
-- ARGV[5]  after_score       the cursor: the score of the last entry of the previous page ('')
-- ARGV[6]  after_id          and its job id; entries at that score from this id on are skipped
-- ARGV[7]  limit             most jobs returned
-- ARGV[8]  budget            most entries read
-- ARGV[9]  queue             filters ('' for any)
-- ARGV[10] actor
-- ARGV[11] state
-- ARGV[12] category
local job_prefix = ARGV[1]
local counter_prefix = ARGV[2]
local upper = ARGV[3]
local lower = ARGV[4]
local after_score = ARGV[5]
local after_id = ARGV[6]
local limit = tonumber(ARGV[7])
local budget = tonumber(ARGV[8])
local wanted = {queue = ARGV[9], actor = ARGV[10], state = ARGV[11], category = ARGV[12]}

local index, smallest = nil, nil
for _, candidate in ipairs(KEYS) do
  local size = redis.call('ZCARD', candidate)
  if not smallest or size < smallest then index, smallest = candidate, size end
end

local function matches(found)
  if not found[1] and not found[3] then return false end  -- the record has expired
  local values = {queue = found[1], actor = found[2], state = found[3], category = found[4]}
  for field, value in pairs(wanted) do
    if value ~= '' and values[field] ~= value then return false end
  end
  return true
end

if after_score ~= '' then upper = after_score end
local out = {0, '', ''}
local matched, read = 0, 0
local offset = 0   -- entries already passed at score `upper` (the walk's position among ties)
local chunk_size = math.max(math.min(limit, budget), 10)
local stopped = false
while not stopped do
  local chunk = redis.call('ZREVRANGEBYSCORE', index, upper, lower, 'WITHSCORES',
    'LIMIT', offset, chunk_size)
  if #chunk == 0 then break end
  for i = 1, #chunk, 2 do
    local id, score = chunk[i], chunk[i + 1]
    if tonumber(score) == tonumber(upper) then offset = offset + 1 else upper, offset = score, 1 end
    local skip = after_score ~= '' and tonumber(score) == tonumber(after_score) and id >= after_id
    if not skip then
      read = read + 1
      out[2], out[3] = score, id
      local found = redis.call('HMGET', job_prefix .. id, 'queue', 'actor', 'state', 'category',
        'finished_at', 'error_type', 'error_message', 'dead_letter_id')
      if matches(found) then
        matched = matched + 1
        out[#out + 1] = id
        out[#out + 1] = score
        for f = 1, 8 do out[#out + 1] = found[f] or '' end
        out[#out + 1] = redis.call('GET', counter_prefix .. id) or '0'
      end
      if matched >= limit or read >= budget then stopped = true break end
    end
  end
  if #chunk < chunk_size * 2 then break end
end
if stopped then
  local rest = redis.call('ZREVRANGEBYSCORE', index, upper, lower, 'LIMIT', offset, 1)
  if #rest > 0 then out[1] = 1 end
end
return out
