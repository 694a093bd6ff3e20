-- is_one_of(states, state)
--   Whether `state` is in `states`, a space-separated list of job states passed in ARGV
--   (middleware/state/jobs.py owns the names; scripts never spell them).
local function is_one_of(states, state)
  return state ~= nil and string.find(' ' .. states .. ' ', ' ' .. state .. ' ', 1, true) ~= nil
end
