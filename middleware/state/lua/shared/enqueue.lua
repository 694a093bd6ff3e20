-- enqueue(queue_list, queue_messages, redis_message_id, data)
--   Dramatiq's own enqueue, as RedisBroker writes it: the encoded message into the queue's
--   payload hash (dramatiq:<queue>.msgs) under its delivery id, then that id onto the queue's
--   list (dramatiq:<queue>), where a worker's fetch finds it.
local function enqueue(queue_list, queue_messages, redis_message_id, data)
  redis.call('HSET', queue_messages, redis_message_id, data)
  redis.call('RPUSH', queue_list, redis_message_id)
end
