-- confirm(order_no): fence DEDUCTED -> CONFIRMED. The buyer's holdings do not change:
-- confirmed tickets count toward the limit like deducted ones.
-- KEYS as in prededuct.lua. Returns {outcome, quantity, available, user_id, stamp} (stamp and
-- {'UNVERIFIED', 0, 0, run_id} as in prededuct.lua).
local meta, fences = KEYS[3], KEYS[4]
local order_no = ARGV[1]
if redis.call('EXISTS', meta) == 0 then
  return {'NOT_LOADED', 0, 0, ''}
end
-- Redis started anew since the tier was checked against the ledger: check it first.
local stamp, run_id = checked_stamp(meta)
if not stamp then
  return {'UNVERIFIED', 0, 0, run_id}
end
local available = tonumber(redis.call('HGET', meta, 'available'))
local fence = redis.call('HGET', fences, order_no)
if not fence then
  return {'UNKNOWN_ORDER', 0, available, '', stamp}
end
local state, qty, user = string.match(fence, '^(%a):(%d+):(.*)$')
qty = tonumber(qty)
if state == 'C' then
  return {'CONFIRMED', qty, available, user, stamp}
end
if state == 'R' then
  return {'ALREADY_ROLLED_BACK', qty, available, user, stamp}
end
redis.call('HINCRBY', meta, 'deducted', -qty)
redis.call('HINCRBY', meta, 'confirmed', qty)
redis.call('HSET', fences, order_no, 'C:' .. qty .. ':' .. user)
return {'CONFIRMED', qty, available, user, stamp}
