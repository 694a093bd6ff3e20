-- Deliveries held by workers in Dramatiq's acks sets, shared by the scripts that put them back.
-- The including script declares the local `namespace` (Dramatiq's key prefix) first.
--
-- acks_key(worker, queue)     -> "<namespace>:__acks__.<worker>.<queue>", the worker's held set
-- put_back(queue, message_id) -> 1 if the message still exists in "<namespace>:<queue>.msgs"
--   and was pushed onto the head of "<namespace>:<queue>", else 0

local function acks_key(worker, queue)
  return namespace .. ':__acks__.' .. worker .. '.' .. queue
end

local function put_back(queue, message_id)
  local list = namespace .. ':' .. queue
  if redis.call('HEXISTS', list .. '.msgs', message_id) == 0 then return 0 end
  redis.call('LPUSH', list, message_id)
  return 1
end
