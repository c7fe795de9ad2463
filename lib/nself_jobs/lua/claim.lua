-- Claim the next job for a worker: promote due delayed jobs, then pop the first
-- waiting id in priority order and mark it started, in one atomic step.
--
-- KEYS[1] history list   KEYS[2] paused set
-- then n queue lists, n scheduled zsets and n wip zsets, highest priority first
-- ARGV[1] n              ARGV[2] now (epoch s)   ARGV[3] now (RQ time string)
-- ARGV[4] now (epoch ms) ARGV[5] worker name     ARGV[6] lease grace (s)
-- ARGV[7..6+n] the plugin queue name of each list, to check against the paused set
--
-- Returns nil, or {id, list index, attempt, type, payload, timeout_ms, account,
-- max attempts, retry delay ms, backoff}.

local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])

for i = 1, n do
  local scheduled = KEYS[2 + n + i]
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', scheduled, id)
    if redis.call('EXISTS', 'rq:job:' .. id) == 1 then
      redis.call('RPUSH', KEYS[2 + i], id)
      redis.call('HSET', 'rq:job:' .. id, 'status', 'queued', 'enqueued_at', ARGV[3])
      redis.call('RPUSH', KEYS[1], cjson.encode({e = 'queued', id = id, t = tonumber(ARGV[4])}))
    end
  end
end

for i = 1, n do
  if redis.call('SISMEMBER', KEYS[2], ARGV[6 + i]) == 0 then
    local id = redis.call('LPOP', KEYS[2 + i])
    while id do
      local job = 'rq:job:' .. id
      local status = redis.call('HGET', job, 'status')
      if status == 'queued' then
        local attempt = redis.call('HINCRBY', job, 'nj_attempts', 1)
        local timeout_ms = tonumber(redis.call('HGET', job, 'nj_timeout_ms'))
        redis.call('HSET', job, 'status', 'started', 'started_at', ARGV[3], 'worker_name', ARGV[5],
          'last_heartbeat', ARGV[3], 'nj_started_ms', ARGV[4])
        redis.call('ZADD', KEYS[2 + 2 * n + i], now + timeout_ms / 1000 + tonumber(ARGV[6]), id)
        redis.call('RPUSH', KEYS[1], cjson.encode({e = 'started', id = id, t = tonumber(ARGV[4]),
          attempt = attempt, worker = ARGV[5]}))
        local data = redis.call('HMGET', job, 'nj_type', 'nj_payload', 'nj_timeout_ms', 'nj_account',
          'nj_max_attempts', 'nj_retry_delay_ms', 'nj_backoff')
        return {id, i, attempt, data[1], data[2], data[3], data[4], data[5], data[6], data[7]}
      elseif not status then
        -- The id was queued but its hash is gone (evicted or deleted): record it, run nothing.
        redis.call('RPUSH', KEYS[1], cjson.encode({e = 'data_missing', id = id, t = tonumber(ARGV[4])}))
      end
      id = redis.call('LPOP', KEYS[2 + i])
    end
  end
end
return nil
