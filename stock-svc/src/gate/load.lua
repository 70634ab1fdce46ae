-- load(total, available, deducted, confirmed, opens_at_ms, closes_at_ms, per_user_limit,
--      price_cents): puts a tier's counters into Redis unless they are there already (never twice).
-- KEYS[1] meta hash. Returns 1 when loaded, 0 when the tier was already present.
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then
  return 0
end
local available = tonumber(ARGV[2])
redis.call('HSET', meta,
  'total', ARGV[1], 'available', ARGV[2], 'deducted', ARGV[3], 'confirmed', ARGV[4],
  'opens_at_ms', ARGV[5], 'closes_at_ms', ARGV[6], 'per_user_limit', ARGV[7],
  'price_cents', ARGV[8], 'sold_out', available == 0 and 1 or 0)
return 1
