-- verify(run_id, verdict...): after Redis started anew (see current_run_id), records which
-- tiers of a session were checked against the ledger.
-- KEYS as in load.lua: session meta, session users, then for every tier its meta, fences, users.
-- ARGV[1]: the run_id the check was made on; ARGV[1 + t]: 'same' when tier t held what the
-- ledger records, 'differs' otherwise.
-- Redis started again since the check (its run_id is not ARGV[1]): nothing is written, the
-- answer is {'RESTARTED'}. Otherwise, for each tier Redis holds that is not yet stamped with
-- the current run_id (one that is was checked or rebuilt by another call meanwhile): 'same'
-- stamps it; 'differs' deletes its keys and the session's meta, so every tier of the session
-- answers NOT_LOADED until the caller has rebuilt the tier from the ledger and the buyers'
-- holdings afresh (load.lua). Returns {'VERIFIED', t...}: the positions (from 1) of the tiers deleted.
local run_id = current_run_id()
if run_id ~= ARGV[1] then
  return {'RESTARTED'}
end
local dropped = {'VERIFIED'}
for t = 1, (#KEYS - 2) / 3 do
  local meta = KEYS[3 * t]
  if redis.call('EXISTS', meta) == 1 and redis.call('HGET', meta, 'run_id') ~= run_id then
    if ARGV[1 + t] == 'same' then
      redis.call('HSET', meta, 'run_id', run_id)
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
