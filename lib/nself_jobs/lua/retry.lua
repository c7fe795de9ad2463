-- Move one failed job back to its queue, atomically, with a fresh set of retries.
-- Two retries of the same job at once enqueue it once: the second finds it queued.
--
-- KEYS[1] job hash   KEYS[2] failed zset   KEYS[3] queue list   KEYS[4] history list
-- KEYS[5] wakeup list
-- ARGV[1] job id     ARGV[2] now (RQ time string)   ARGV[3] history event (JSON)
-- ARGV[4] max wakeup tokens
-- ARGV[5] the attempt count the caller saw when it listed the job, or '' for no check
--
-- Returns 'retried', 'changed' when the job failed again since the caller listed
-- it (another retry got there first), or the job's status when it is not failed.

local state = redis.call('HMGET', KEYS[1], 'status', 'nj_attempts', 'nj_retries')
if not state[1] then
  return 'missing'
end
if state[1] ~= 'failed' then
  return state[1]
end
if ARGV[5] ~= '' and ARGV[5] ~= state[2] then
  return 'changed'
end
local max_attempts = tonumber(state[2] or '0') + tonumber(state[3] or '0') + 1
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'enqueued_at', ARGV[2], 'nj_max_attempts', max_attempts,
  'nj_error', '', 'nj_cancel_requested', '0')
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
redis.call('RPUSH', KEYS[4], ARGV[3])
return 'retried'
