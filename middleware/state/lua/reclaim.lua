-- Put back at the head of their queues deliveries this worker holds in Redis but no longer in
-- memory: a fetch whose reply was lost, a settlement a failover took back (middleware.redelivery).
--
-- ARGV[1]  namespace: Dramatiq's key prefix ("dramatiq")
-- ARGV[2]  worker_id: this worker's broker id
-- ARGV[3…] pairs: queue, message id
--
-- A pair is put back only while the delivery is still in "<namespace>:__acks__.<worker>.<queue>"
-- (it is removed from there) and its message still exists in "<namespace>:<queue>.msgs".
-- Returns how many messages were put back.

local namespace = ARGV[1]
local worker_id = ARGV[2]
local FIRST_PAIR = 3

-- @include held_deliveries

local moved = 0
for i = FIRST_PAIR, #ARGV, 2 do
  local queue, message_id = ARGV[i], ARGV[i + 1]
  local held = acks_key(worker_id, queue)
  if redis.call('SREM', held, message_id) == 1 then
    moved = moved + put_back(queue, message_id)
  end
end
return moved
