-- Record the end of one attempt, atomically, if the caller still owns it.
--
-- KEYS[1] job hash   KEYS[2] wip zset   KEYS[3] history list
-- KEYS[4] target: finished, failed or canceled zset, the scheduled zset, or the queue list
-- KEYS[5] wakeup list
-- ARGV[1] job id     ARGV[2] owner worker name, or '' to skip the owner check
-- ARGV[3] attempt number the owner ran
-- ARGV[4] outcome: completed, failed, cancelled, retry-later or retry-now
-- ARGV[5] score: removal time for final states, due time for retry-later (epoch s)
-- ARGV[6] hash expiry in ms for final states, 0 to keep
-- ARGV[7] max wakeup tokens
-- ARGV[8..] job hash field, value pairs, then '--', then history events (JSON)
--
-- Returns 1 when recorded, 0 when the attempt is no longer the caller's: another
-- process already recovered, cancelled or finished it.

local job = KEYS[1]
local current = redis.call('HMGET', job, 'status', 'worker_name', 'nj_attempts')
if current[1] ~= 'started' then
  return 0
end
if ARGV[2] ~= '' and (current[2] ~= ARGV[2] or current[3] ~= ARGV[3]) then
  return 0
end

redis.call('ZREM', KEYS[2], ARGV[1])

local fields = {}
local i = 8
while ARGV[i] ~= '--' do
  fields[#fields + 1] = ARGV[i]
  i = i + 1
end
if #fields > 0 then
  redis.call('HSET', job, unpack(fields))
end
for j = i + 1, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[j])
end

local outcome = ARGV[4]
if outcome == 'retry-now' then
  redis.call('RPUSH', KEYS[4], ARGV[1])
  redis.call('LPUSH', KEYS[5], '1')
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[7]) - 1)
else
  redis.call('ZADD', KEYS[4], tonumber(ARGV[5]), ARGV[1])
  local expiry_ms = tonumber(ARGV[6])
  if expiry_ms > 0 then
    redis.call('PEXPIRE', job, expiry_ms)
  end
end
return 1
