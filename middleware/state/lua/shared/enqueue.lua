-- enqueue(queue_list, queue_messages, redis_message_id, data)
--   Dramatiq's own enqueue, as RedisBroker writes it: the encoded message into the queue's
--   payload hash (dramatiq:<queue>.msgs) under its delivery id, then that id onto the queue's
--   list (dramatiq:<queue>), where a worker's fetch finds it.
-- enqueue_once(queue_list, queue_messages, redis_message_id, data) -> false, writing nothing,
--   when that delivery id is in the payload hash already; else enqueues as enqueue does.

-- Onto the list the fetch reads: the one place evalq writes it.
local function push_delivery(queue_list, redis_message_id)
  redis.call('RPUSH', queue_list, redis_message_id)
end

local function enqueue(queue_list, queue_messages, redis_message_id, data)
  redis.call('HSET', queue_messages, redis_message_id, data)
  push_delivery(queue_list, redis_message_id)
end

local function enqueue_once(queue_list, queue_messages, redis_message_id, data)
  if redis.call('HSETNX', queue_messages, redis_message_id, data) == 0 then return false end
  push_delivery(queue_list, redis_message_id)
  return true
end
