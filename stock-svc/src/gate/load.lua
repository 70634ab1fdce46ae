-- load(per_user_limit, stamp, [tier]...): puts the tiers of one session that Redis lacks into
-- it, each never twice, with the fences they are rebuilt from; then the session's rules and its buyers'
-- holdings across its tiers.
-- KEYS[1] session meta, KEYS[2] session users, then for every tier of the session its meta,
-- fences and users (as in prededuct.lua). The caller passes every tier the session has.
-- A tier in ARGV: tier_id, total, available, deducted, confirmed, opens_at_ms, closes_at_ms,
-- tier_limit, price_cents, n, then n pairs (order_no, fence); n = -1 when the caller did not
-- read the tier's fences from the ledger (it expected Redis to hold the tier).
-- A tier Redis lacks whose fences did not come: nothing is written, the answer is
-- {'MISSING', tier_id...} and the caller comes back with their fences. Otherwise the missing
-- tiers are loaded (a tier's buyers' holdings follow from its DEDUCTED and CONFIRMED fences)
-- and, when any was or the session's meta was missing, the session's holdings are computed
-- afresh as the sum of its tiers' holdings: never added to, so a tier rebuilt beside tiers
-- that Redis kept is counted once. A tier loaded is stamped with Redis' run_id and with
-- `stamp`, which the caller records as the tier's in Postgres: it is the ledger's, checked.
-- Returns {'LOADED', tier_id...}: the tiers this call loaded.
local session_meta, session_users = KEYS[1], KEYS[2]
local tiers = (#KEYS - 2) / 3
local blocks = {}
local missing = {'MISSING'}
local at = 3
for t = 1, tiers do
  local n = tonumber(ARGV[at + 9])
  local present = redis.call('EXISTS', KEYS[3 * t]) == 1
  if not present and n < 0 then
    table.insert(missing, ARGV[at])
  end
  blocks[t] = {at = at, n = n, present = present}
  at = at + 10 + 2 * math.max(n, 0)
end
if #missing > 1 then
  return missing
end
local loaded = {'LOADED'}
local run_id = current_run_id()
for t = 1, tiers do
  local b = blocks[t]
  if not b.present then
    local meta, fences, users = KEYS[3 * t], KEYS[3 * t + 1], KEYS[3 * t + 2]
    local s = b.at
    redis.call('DEL', fences, users)
    for i = s + 10, s + 9 + 2 * b.n, 2 do
      local order_no, fence = ARGV[i], ARGV[i + 1]
      redis.call('HSET', fences, order_no, fence)
      local state, qty, user = string.match(fence, '^(%a):(%d+):(.*)$')
      if (state == 'D' or state == 'C') and tonumber(qty) > 0 then
        redis.call('HINCRBY', users, user, tonumber(qty))
      end
    end
    redis.call('HSET', meta,
      'total', ARGV[s + 1], 'available', ARGV[s + 2], 'deducted', ARGV[s + 3],
      'confirmed', ARGV[s + 4], 'opens_at_ms', ARGV[s + 5], 'closes_at_ms', ARGV[s + 6],
      'tier_limit', ARGV[s + 7], 'price_cents', ARGV[s + 8],
      'sold_out', tonumber(ARGV[s + 2]) == 0 and 1 or 0, 'run_id', run_id, 'stamp', ARGV[2])
    table.insert(loaded, ARGV[s])
  end
end
if #loaded > 1 or redis.call('EXISTS', session_meta) == 0 then
  redis.call('HSET', session_meta, 'per_user_limit', ARGV[1])
  redis.call('DEL', session_users)
  for t = 1, tiers do
    local held = redis.call('HGETALL', KEYS[3 * t + 2])
    for i = 1, #held, 2 do
      redis.call('HINCRBY', session_users, held[i], tonumber(held[i + 1]))
    end
  end
end
return loaded
