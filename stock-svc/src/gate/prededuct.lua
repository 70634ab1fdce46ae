-- prededuct(order_no, user_id, quantity) on one tier.
-- KEYS[1] meta hash (total, available, deducted, confirmed, opens_at_ms, closes_at_ms,
--         per_user_limit, price_cents, sold_out), KEYS[2] fences (order_no -> "D|C|R:qty:user"),
--         KEYS[3] per-user holdings (user_id -> tickets deducted or confirmed).
-- Returns {outcome, available, price_cents}.
local meta, fences, users = KEYS[1], KEYS[2], KEYS[3]
local order_no, user, qty = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', meta) == 0 then
  return {'NOT_LOADED', 0, 0}
end
local m = redis.call('HMGET', meta, 'available', 'opens_at_ms', 'closes_at_ms', 'per_user_limit', 'price_cents')
local available, opens, closes = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
local limit, price = tonumber(m[4]), tonumber(m[5])
local fence = redis.call('HGET', fences, order_no)
if fence then
  local state = string.sub(fence, 1, 1)
  if state == 'R' then
    return {'ALREADY_ROLLED_BACK', available, price}
  end
  return {'DEDUCTED', available, price}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < opens then
  return {'SALE_NOT_OPEN', available, price}
end
if now >= closes then
  return {'SALE_CLOSED', available, price}
end
local held = tonumber(redis.call('HGET', users, user) or '0')
if held + qty > limit then
  return {'LIMIT_REACHED', available, price}
end
if available < qty then
  if available == 0 then
    redis.call('HSET', meta, 'sold_out', 1)
  end
  return {'SOLD_OUT', available, price}
end
available = redis.call('HINCRBY', meta, 'available', -qty)
redis.call('HINCRBY', meta, 'deducted', qty)
redis.call('HINCRBY', users, user, qty)
redis.call('HSET', fences, order_no, 'D:' .. qty .. ':' .. user)
if available == 0 then
  redis.call('HSET', meta, 'sold_out', 1)
end
return {'DEDUCTED', available, price}
