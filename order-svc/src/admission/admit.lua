-- admit(order_no, user_id, request_id, quantity, hold_ms): whether a new order of a tier may be
-- accepted (see stock_keys.rs, "Admission").
-- KEYS[1] tier meta (available), KEYS[2] promises (order_no -> quantity, `_total`),
-- KEYS[3] promised_at (order_no scored by ms), KEYS[4] requests (`user_id request_id` ->
-- order_no); all under the hash tag of the tier's session.
-- Returns {'REPEAT', order_no} when the request was admitted before (the caller answers with
-- that order; no new promise); {'ADMITTED', order_no} after promising `quantity` tickets to
-- `order_no`; {'SOLD_OUT', ''} when the tickets left are all promised or sold;
-- {'UNLOADED', ''} when Redis does not hold the tier (the prededuct will decide).
-- Promises older than hold_ms are let go first (a few per call), so an order whose saga never
-- reached its prededuct does not hold tickets for ever.
local meta, promises, promised_at, requests = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local order_no, user, request = ARGV[1], ARGV[2], ARGV[3]
local qty, hold_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local asked = user .. ' ' .. request
local earlier = redis.call('HGET', requests, asked)
if earlier then
  return {'REPEAT', earlier}
end
local available = redis.call('HGET', meta, 'available')
if not available then
  return {'UNLOADED', ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, old in ipairs(redis.call('ZRANGEBYSCORE', promised_at, '-inf', now - hold_ms, 'LIMIT', 0, 16)) do
  release_promise(promises, promised_at, old)
end
local promised = tonumber(redis.call('HGET', promises, '_total') or '0')
if tonumber(available) - promised < qty then
  return {'SOLD_OUT', ''}
end
redis.call('HSET', promises, order_no, qty)
redis.call('HINCRBY', promises, '_total', qty)
redis.call('ZADD', promised_at, now, order_no)
redis.call('HSET', requests, asked, order_no)
return {'ADMITTED', order_no}
