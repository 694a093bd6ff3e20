-- Finish a job's delivery: ack it and write the job's final state and last attempt, in one
-- atomic step, so a worker killed right after can never leave an acked job "running".
--
-- KEYS[1]  held: Dramatiq's set of deliveries held by this consumer ("__acks__.<worker>.<queue>")
-- KEYS[2]  payloads: the queue's message hash ("<queue>.msgs")
-- KEYS[3]  job: the job's state hash
-- KEYS[4]  attempts: the job's attempt timeline hash (attempt number -> JSON)
-- ARGV[1]  redis_message_id: the delivery to ack
-- ARGV[2]  attempt_n: the number of the attempt that finished
-- ARGV[3]  attempt_json: its timeline entry
-- ARGV[4]  ttl_s: how long job records are kept, in seconds
-- ARGV[5…] fields: field, value pairs written to the job's state hash (its state first)
--
-- Returns 1 when it acked the delivery; 2 when the delivery was no longer held but the job was
-- still "running", so its outcome was written all the same; 0 (having written nothing) when the
-- delivery was no longer held and the job had ended already.
--
-- A delivery is no longer held when it was requeued after a heartbeat timeout (a Redis outage
-- longer than the timeout makes every worker look dead) while this attempt still ran. Another
-- delivery of the job then runs, or has run. If that other delivery finished first and this one
-- then marked the job "running" again (a redelivered job starts again once it runs alone), no
-- one else would ever end it: the outcome this attempt reached is true, so it is written.

local held = KEYS[1]
local payloads = KEYS[2]
local job = KEYS[3]
local attempts = KEYS[4]
local redis_message_id = ARGV[1]
local attempt_n = ARGV[2]
local attempt_json = ARGV[3]
local ttl_s = ARGV[4]

local acked = 1
if redis.call('SREM', held, redis_message_id) == 0 then
  if redis.call('HGET', job, 'state') ~= 'running' then
    return 0
  end
  acked = 2
else
  redis.call('HDEL', payloads, redis_message_id)
end
redis.call('HSET', attempts, attempt_n, attempt_json)
redis.call('EXPIRE', attempts, ttl_s)
redis.call('HSET', job, unpack(ARGV, 5))
redis.call('EXPIRE', job, ttl_s)
return acked
