-- Enqueue one job atomically: job hash, queue entry, history event and unique key.
--
-- KEYS[1] job hash          KEYS[2] queue list, or scheduled zset when delayed
-- KEYS[3] history list      KEYS[4] rq:queues set
-- KEYS[5] wakeup list       KEYS[6] unique-key string (equal to KEYS[1] when unused)
-- ARGV[1] job id            ARGV[2] '1' when KEYS[6] is a unique key
-- ARGV[3] due time in epoch seconds, or '' to enqueue now
-- ARGV[4] history event (JSON)   ARGV[5] RQ queue key, for rq:queues
-- ARGV[6] max wakeup tokens      ARGV[7..] job hash field, value pairs
--
-- Returns {1, id} when enqueued, {0, existing id} when the unique key is taken.

if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[6])
  if existing and redis.call('EXISTS', 'rq:job:' .. existing) == 1 then
    return {0, existing}
  end
  redis.call('SET', KEYS[6], ARGV[1])
end

local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[4], ARGV[5])

if ARGV[3] == '' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('LPUSH', KEYS[5], '1')
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1)
else
  redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[1])
end

redis.call('RPUSH', KEYS[3], ARGV[4])
return {1, ARGV[1]}
