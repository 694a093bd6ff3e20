-- The job index (middleware/state/job_index.py: search_jobs): sorted sets of job ids scored by when
-- the job was enqueued, one per value of each indexed field, kept in step with the job's record
-- in the same script that changes it. The including script declares the local
--   JOB_INDEX   prefix of every index key (keys.JOB_INDEX_PREFIX)
--
-- IS_INDEXED_FIELD[name] -> whether a field of the state hash is indexed
-- indexed_fields(job_key, ...) -> {queue=, actor=, state=, category=} as the record holds them
--   now, and a list of the values (false when absent) of the further fields named, read in the
--   same HMGET
-- index_job(id, score, before, after, rescore)
--   Move the job's entries from the indexes of `before` to those of `after` (tables as
--   indexed_fields returns; a nil field is in no index). The score is the one the job is
--   indexed with already; `score` (ms) is used for a job not indexed yet (a job without a
--   record is taken to be new), or for every entry with `rescore` (a redrive enqueues the job
--   anew). Without a score nothing is indexed.
-- write_job(job_key, id, score, ttl_s, changes)
--   Write `changes`, a list of field, value, field, value, ..., to the job's state hash (kept
--   ttl_s seconds) and move its index entries to match, as index_job does with `score`.
-- argv_from(first) -> the list ARGV[first], ARGV[first + 1], ... (changes passed as arguments)

local INDEXED_FIELDS = {'queue', 'actor', 'state', 'category'}
-- Fields whose values are recorded in <JOB_INDEX>names:<field> for the trim to find their indexes
-- (states are a fixed list the trim is given, and a queue-state index is a queue's and a state's).
local NAMED_FIELDS = {queue = true, actor = true, category = true}
local IS_INDEXED_FIELD = {queue = true, actor = true, state = true, category = true}

local function indexed_fields(job_key, ...)
  local found = redis.call('HMGET', job_key, 'queue', 'actor', 'state', 'category', ...)
  return {queue = found[1] or nil, actor = found[2] or nil, state = found[3] or nil,
          category = found[4] or nil}, {unpack(found, 5)}
end

local function move_entry(field, old, new, id, score, fresh)
  if old and old ~= new then redis.call('ZREM', JOB_INDEX .. field .. ':' .. old, id) end
  if new and (fresh or old ~= new) then
    redis.call('ZADD', JOB_INDEX .. field .. ':' .. new, score, id)
    if NAMED_FIELDS[field] then redis.call('SADD', JOB_INDEX .. 'names:' .. field, new) end
  end
end

local function pair(a, b)
  if a and b then return a .. ':' .. b end
  return nil
end

local function index_job(id, score, before, after, rescore)
  local known = nil
  if before.state or before.queue then known = redis.call('ZSCORE', JOB_INDEX .. 'all', id) end
  if known and not rescore then score = known end
  if not score or score == '' then return end
  local fresh = rescore or not known
  if fresh then redis.call('ZADD', JOB_INDEX .. 'all', score, id) end
  for _, field in ipairs(INDEXED_FIELDS) do
    move_entry(field, before[field], after[field], id, score, fresh)
  end
  move_entry('queue-state', pair(before.queue, before.state), pair(after.queue, after.state),
             id, score, fresh)
end

local function argv_from(first)
  local list = {}
  for i = first, #ARGV do list[#list + 1] = ARGV[i] end
  return list
end

local function write_job(job_key, id, score, ttl_s, changes)
  local before = indexed_fields(job_key)
  local after = {queue = before.queue, actor = before.actor, state = before.state,
                 category = before.category}
  for i = 1, #changes, 2 do
    local field = changes[i]
    if IS_INDEXED_FIELD[field] then after[field] = changes[i + 1] end
  end
  redis.call('HSET', job_key, unpack(changes))
  redis.call('EXPIRE', job_key, ttl_s)
  index_job(id, score, before, after, false)
end
