-- verify(run_id, stamp, verdict...): records which tiers of a session were checked against the
-- ledger: after Redis started anew (see current_run_id), or when a record was refused.
-- KEYS as in load.lua: session meta, session users, then for every tier its meta, fences, users.
-- ARGV[1]: the run_id the check was made on; ARGV[2]: the check's stamp, which the caller
-- records as the tiers' in Postgres; ARGV[2 + t]: 'same' when tier t held what the ledger
-- records, 'differs' otherwise. The caller holds the session's tiers locked in Postgres while
-- it checks, so no other check or record of them runs meanwhile.
-- Redis started again since the check (its run_id is not ARGV[1]): nothing is written, the
-- answer is {'RESTARTED'}. Otherwise, for each tier Redis holds: 'same' stamps it; 'differs'
-- deletes its keys and the session's meta, so every tier of the session answers NOT_LOADED
-- until the caller has rebuilt the tier from the ledger and the buyers' holdings afresh
-- (load.lua). Returns {'VERIFIED', t...}: the positions (from 1) of the tiers deleted.
local run_id = current_run_id()
if run_id ~= ARGV[1] then
  return {'RESTARTED'}
end
local dropped = {'VERIFIED'}
for t = 1, (#KEYS - 2) / 3 do
  local meta = KEYS[3 * t]
  if redis.call('EXISTS', meta) == 1 then
    if ARGV[2 + t] == 'same' then
      redis.call('HSET', meta, 'run_id', run_id, 'stamp', ARGV[2])
    else
      table.insert(dropped, t)
      redis.call('DEL', meta, KEYS[3 * t + 1], KEYS[3 * t + 2])
    end
  end
end
if #dropped > 1 then
  redis.call('DEL', KEYS[1])
end
return dropped
