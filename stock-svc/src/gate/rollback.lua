-- rollback(order_no): returns the order's tickets once, to the tier and to the buyer's
-- holdings in the tier and in the session.
-- KEYS as in prededuct.lua (a promise still held ends here too). Returns {outcome, quantity,
-- available, user_id, stamp} (stamp and {'UNVERIFIED', 0, 0, run_id} as in prededuct.lua).
local session_meta, session_users, meta, fences, users = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local order_no = ARGV[1]
if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', session_meta) == 0 then
  return {'NOT_LOADED', 0, 0, ''}
end
-- Redis started anew since the tier was checked against the ledger: check it first.
local stamp, run_id = checked_stamp(meta)
if not stamp then
  return {'UNVERIFIED', 0, 0, run_id}
end
if KEYS[7] then
  release_promise(KEYS[6], KEYS[7], order_no)
end
local fence = redis.call('HGET', fences, order_no)
if not fence then
  -- An empty rollback: the prededuct never arrived. The fence refuses it if it comes later.
  redis.call('HSET', fences, order_no, 'R:0:')
  return {'ROLLED_BACK', 0, tonumber(redis.call('HGET', meta, 'available')), '', stamp}
end
local state, qty, user = string.match(fence, '^(%a):(%d+):(.*)$')
qty = tonumber(qty)
if state == 'R' then
  return {'ROLLED_BACK', qty, tonumber(redis.call('HGET', meta, 'available')), user, stamp}
end
if state == 'C' then
  return {'ALREADY_CONFIRMED', qty, tonumber(redis.call('HGET', meta, 'available')), user, stamp}
end
local available = redis.call('HINCRBY', meta, 'available', qty)
redis.call('HINCRBY', meta, 'deducted', -qty)
for _, holdings in ipairs({users, session_users}) do
  if tonumber(redis.call('HINCRBY', holdings, user, -qty)) <= 0 then
    redis.call('HDEL', holdings, user)
  end
end
redis.call('HSET', fences, order_no, 'R:' .. qty .. ':' .. user)
if available > 0 then
  redis.call('HSET', meta, 'sold_out', 0)
end
return {'ROLLED_BACK', qty, available, user, stamp}
