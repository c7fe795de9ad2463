-- The body of the composed step script (see queue.step_script): settle() and claim()
-- are settle.lua and claim.lua wrapped as local functions of their own KEYS and ARGV.

local settle_keys = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}
local claim_keys = {}
for i = 6, #KEYS do
  claim_keys[#claim_keys + 1] = KEYS[i]
end
local settle_count = tonumber(ARGV[1])
local settle_args = {}
for i = 2, settle_count + 1 do
  settle_args[#settle_args + 1] = ARGV[i]
end
local claim_args = {}
for i = settle_count + 2, #ARGV do
  claim_args[#claim_args + 1] = ARGV[i]
end

local recorded = settle(settle_keys, settle_args)
return {recorded, claim(claim_keys, claim_args)}
