-- Put the deliveries held by dead workers back at the head of their queues, and beat this
-- worker's heart. Run by every worker process on a fixed interval (middleware.redelivery), so a
-- dead worker's jobs come back within its heartbeat timeout plus one interval, first in line.
--
-- KEYS[1]  heartbeats: Dramatiq's sorted set of worker ids by their last heartbeat (ms)
-- ARGV[1]  namespace: Dramatiq's key prefix ("dramatiq")
-- ARGV[2]  now_ms: the current time, in milliseconds
-- ARGV[3]  timeout_ms: a worker silent this long is dead
-- ARGV[4]  worker_id: this worker's broker id (its heartbeat is refreshed)
-- ARGV[5…] queues: the queue names whose deliveries are looked for (delay queues included)
--
-- For each dead worker and queue, the ids in "<namespace>:__acks__.<worker>.<queue>" whose
-- message still exists in "<namespace>:<queue>.msgs" are pushed onto the head of
-- "<namespace>:<queue>", and the set is deleted. Returns how many messages were put back, and
-- what this worker holds itself: {moved, {queue, message id, queue, message id, ...}}, for it to
-- find the deliveries it holds in Redis but no longer in memory (lua/reclaim.lua).

local heartbeats = KEYS[1]
local namespace = ARGV[1]
local now_ms = tonumber(ARGV[2])
local timeout_ms = tonumber(ARGV[3])
local worker_id = ARGV[4]
local FIRST_QUEUE = 5

-- @include held_deliveries

redis.call('ZADD', heartbeats, now_ms, worker_id)
local dead = redis.call('ZRANGEBYSCORE', heartbeats, '-inf', now_ms - timeout_ms)
local moved = 0
for _, dead_worker in ipairs(dead) do
  for i = FIRST_QUEUE, #ARGV do
    local queue = ARGV[i]
    local held = acks_key(dead_worker, queue)
    for _, message_id in ipairs(redis.call('SMEMBERS', held)) do
      moved = moved + put_back(queue, message_id)
    end
    redis.call('DEL', held)
  end
end
local own = {}
for i = FIRST_QUEUE, #ARGV do
  local queue = ARGV[i]
  for _, message_id in ipairs(redis.call('SMEMBERS', acks_key(worker_id, queue))) do
    own[#own + 1] = queue
    own[#own + 1] = message_id
  end
end
return {moved, own}
