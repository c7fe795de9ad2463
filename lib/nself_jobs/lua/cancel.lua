-- Cancel a job: a waiting or delayed job is removed from its queue at once; a running
-- job gets a cancel request that its worker acts on within about a second.
--
-- KEYS[1] job hash   KEYS[2] queue list   KEYS[3] scheduled zset   KEYS[4] canceled zset
-- KEYS[5] history list
-- ARGV[1] job id     ARGV[2] now (epoch s)   ARGV[3] now (RQ time string)   ARGV[4] now (epoch ms)
-- ARGV[5] hash expiry in ms   ARGV[6] history event (JSON)
--
-- Returns 'cancelled', 'requested' (running), or the job's final status
-- ('finished', 'failed', 'canceled') when there is nothing to cancel.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'missing'
end
if status == 'started' then
  redis.call('HSET', KEYS[1], 'nj_cancel_requested', '1')
  return 'requested'
end
if status == 'queued' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
elseif status == 'scheduled' then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  return status
end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'ended_at', ARGV[3], 'nj_ended_ms', ARGV[4])
redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + tonumber(ARGV[5]) / 1000, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[5]), 1))
redis.call('RPUSH', KEYS[5], ARGV[6])
return 'cancelled'
