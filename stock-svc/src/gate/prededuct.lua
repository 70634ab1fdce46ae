-- prededuct(order_no, user_id, quantity) on one tier of a session.
-- KEYS[1] session meta (per_user_limit), KEYS[2] session users (user_id -> tickets deducted or
--         confirmed in every tier of the session), KEYS[3] tier meta (total, available,
--         deducted, confirmed, opens_at_ms, closes_at_ms, tier_limit, price_cents, sold_out),
--         KEYS[4] fences (order_no -> "D|C|R:qty:user"), KEYS[5] tier users (user_id -> tickets
--         deducted or confirmed in this tier), KEYS[6] and KEYS[7] the tier's promises and
--         promised_at (optional): the order's promise ends here, whatever the outcome.
-- A buyer holds at most the session's per_user_limit across its tiers, and at most the tier's
-- tier_limit in this tier when that is above 0.
-- Returns {outcome, available, price_cents, stamp}: stamp is the tier's last check against the
-- ledger, which its record in the ledger names (run_id.lua); {'UNVERIFIED', 0, 0, run_id} when
-- the tier was not checked since Redis started.
local session_meta, session_users, meta, fences, users = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local order_no, user, qty = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', session_meta) == 0 then
  return {'NOT_LOADED', 0, 0}
end
-- Redis started anew since the tier was checked against the ledger: check it first.
local stamp, run_id = checked_stamp(meta)
if not stamp then
  return {'UNVERIFIED', 0, 0, run_id}
end
if KEYS[7] then
  release_promise(KEYS[6], KEYS[7], order_no)
end
local m = redis.call('HMGET', meta, 'available', 'opens_at_ms', 'closes_at_ms', 'tier_limit', 'price_cents')
local available, opens, closes = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
local tier_limit, price = tonumber(m[4]), tonumber(m[5])
local fence = redis.call('HGET', fences, order_no)
if fence then
  local state = string.sub(fence, 1, 1)
  if state == 'R' then
    return {'ALREADY_ROLLED_BACK', available, price, stamp}
  end
  return {'DEDUCTED', available, price, stamp}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < opens then
  return {'SALE_NOT_OPEN', available, price, stamp}
end
if now >= closes then
  return {'SALE_CLOSED', available, price, stamp}
end
local session_limit = tonumber(redis.call('HGET', session_meta, 'per_user_limit'))
local in_session = tonumber(redis.call('HGET', session_users, user) or '0')
if in_session + qty > session_limit then
  return {'LIMIT_REACHED', available, price, stamp}
end
if tier_limit > 0 then
  local in_tier = tonumber(redis.call('HGET', users, user) or '0')
  if in_tier + qty > tier_limit then
    return {'LIMIT_REACHED', available, price, stamp}
  end
end
if available < qty then
  if available == 0 then
    redis.call('HSET', meta, 'sold_out', 1)
  end
  return {'SOLD_OUT', available, price, stamp}
end
available = redis.call('HINCRBY', meta, 'available', -qty)
redis.call('HINCRBY', meta, 'deducted', qty)
redis.call('HINCRBY', users, user, qty)
redis.call('HINCRBY', session_users, user, qty)
redis.call('HSET', fences, order_no, 'D:' .. qty .. ':' .. user)
if available == 0 then
  redis.call('HSET', meta, 'sold_out', 1)
end
return {'DEDUCTED', available, price, stamp}
