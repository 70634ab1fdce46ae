-- current_run_id(): the run_id of this Redis process. It is new on every start (a restart, a
-- restored snapshot, a replica promoted in a failover), so a tier whose meta carries another
-- run_id has not been checked against the ledger since Redis may have gone back in time.
local function current_run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end

-- checked_stamp(meta): the stamp of the tier's last check against the ledger (load.lua,
-- verify.lua), when that check was made on this Redis process; false otherwise (Redis started
-- anew since, or the tier was checked by a version that stamped none). Then the run_id.
-- A fence change answers with the stamp, and the ledger takes its record only while the
-- tier's stamp in Postgres is the same one: a check made since refuses it.
local function checked_stamp(meta)
  local run_id = current_run_id()
  local m = redis.call('HMGET', meta, 'run_id', 'stamp')
  if m[1] ~= run_id or not m[2] then
    return false, run_id
  end
  return m[2], run_id
end
