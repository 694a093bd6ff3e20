-- job_index_trim: remove the job index's entries of jobs enqueued before a cutoff, at most
-- `budget` of them per call (run on a schedule, never per job). Every index key is found from
-- the sets of indexed values, so nothing is scanned. Returns {entries removed, 1 if the budget
-- ran out before the trim was done else 0}.
--
-- ARGV[1] JOB_INDEX   prefix of the job index's keys (keys.JOB_INDEX_PREFIX)
-- ARGV[2] cutoff      entries scored below this (ms) are removed
-- ARGV[3] budget      most entries removed by this call
-- ARGV[4] states      every job state, space-separated (jobs.STATES)
local JOB_INDEX = ARGV[1]
local cutoff = ARGV[2]
local budget = tonumber(ARGV[3])
local states = ARGV[4]

local removed = 0

-- Remove what is older than the cutoff from one index; false once the budget is spent.
local function trim(key)
  local old = redis.call('ZCOUNT', key, '-inf', '(' .. cutoff)
  local take = math.min(old, budget - removed)
  if take > 0 then redis.call('ZREMRANGEBYRANK', key, 0, take - 1) end
  removed = removed + take
  return take == old
end

local complete = trim(JOB_INDEX .. 'all')
for state in string.gmatch(states, '%S+') do
  if complete then complete = trim(JOB_INDEX .. 'state:' .. state) end
end
for _, field in ipairs({'queue', 'actor', 'category'}) do
  local names = JOB_INDEX .. 'names:' .. field
  for _, value in ipairs(redis.call('SMEMBERS', names)) do
    local key = JOB_INDEX .. field .. ':' .. value
    if complete then complete = trim(key) end
    if field == 'queue' then
      for state in string.gmatch(states, '%S+') do
        if complete then complete = trim(JOB_INDEX .. 'queue-state:' .. value .. ':' .. state) end
      end
    end
    if complete and redis.call('EXISTS', key) == 0 then redis.call('SREM', names, value) end
  end
end
return {removed, complete and 0 or 1}
