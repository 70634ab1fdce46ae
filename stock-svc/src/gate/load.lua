-- load(total, available, deducted, confirmed, opens_at_ms, closes_at_ms, per_user_limit,
--      price_cents, [order_no, fence]...): puts a tier into Redis unless it is there already
-- (never twice), with the fences it is rebuilt from. Buyers' holdings follow from the fences
-- that are DEDUCTED or CONFIRMED. KEYS as in prededuct.lua.
-- Returns 1 when loaded, 0 when the tier was already present.
local meta, fences, users = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 1 then
  return 0
end
redis.call('DEL', fences, users)
for i = 9, #ARGV, 2 do
  local order_no, fence = ARGV[i], ARGV[i + 1]
  redis.call('HSET', fences, order_no, fence)
  local state, qty, user = string.match(fence, '^(%a):(%d+):(.*)$')
  if (state == 'D' or state == 'C') and tonumber(qty) > 0 then
    redis.call('HINCRBY', users, user, tonumber(qty))
  end
end
local available = tonumber(ARGV[2])
redis.call('HSET', meta,
  'total', ARGV[1], 'available', ARGV[2], 'deducted', ARGV[3], 'confirmed', ARGV[4],
  'opens_at_ms', ARGV[5], 'closes_at_ms', ARGV[6], 'per_user_limit', ARGV[7],
  'price_cents', ARGV[8], 'sold_out', available == 0 and 1 or 0)
return 1
