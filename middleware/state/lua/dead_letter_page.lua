-- dead_letter_page: one page of an index of the dead-letter store, newest first, with the
-- records. Returns {more (0|1), id1, json1, id2, json2, ...}.
--
-- KEYS[1] index   the index to page (keys.DLQ_INDEX_ALL or one of keys.dlq_*_index_key)
--
-- ARGV[1] record_prefix   prefix of a record hash (keys.DLQ_RECORD_PREFIX)
-- ARGV[2] upper           lexical upper bound ('+', or '(' / '[' and an id)
-- ARGV[3] lower           lexical lower bound ('-', or '(' / '[' and an id prefix)
-- ARGV[4] limit           most records returned
local index = KEYS[1]
local record_prefix = ARGV[1]
local upper = ARGV[2]
local lower = ARGV[3]
local limit = tonumber(ARGV[4])

local ids = redis.call('ZREVRANGEBYLEX', index, upper, lower, 'LIMIT', 0, limit + 1)
local out = {0}
if #ids > limit then out[1] = 1 end
for i = 1, math.min(#ids, limit) do
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call('HGET', record_prefix .. ids[i], 'json')
end
return out
