-- held(acks, redis_message_id)
--   Whether this worker still holds the delivery: it is in the worker's acks set
--   (dramatiq:__acks__.<broker id>.<queue>). A delivery requeued after a heartbeat timeout, or
--   already settled, is not, and must not be settled (again) here.
-- release(acks, queue_messages, redis_message_id)
--   Dramatiq's ack of a held delivery: out of the acks set, its payload out of the queue's hash.
local function held(acks, redis_message_id)
  return redis.call('SISMEMBER', acks, redis_message_id) == 1
end

local function release(acks, queue_messages, redis_message_id)
  redis.call('SREM', acks, redis_message_id)
  redis.call('HDEL', queue_messages, redis_message_id)
end
