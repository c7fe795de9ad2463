-- Move a delayed job to the tail of its queue now, keeping its priority.
--
-- KEYS[1] job hash   KEYS[2] scheduled zset   KEYS[3] queue list   KEYS[4] history list
-- KEYS[5] wakeup list
-- ARGV[1] job id     ARGV[2] now (RQ time string)   ARGV[3] history event (JSON)
-- ARGV[4] max wakeup tokens
--
-- Returns 'promoted', or the job's status when it is not delayed.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'missing'
end
if status ~= 'scheduled' then
  return status
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'enqueued_at', ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
redis.call('RPUSH', KEYS[4], ARGV[3])
return 'promoted'
