-- current_run_id(): the run_id of this Redis process. It is new on every start (a restart, a
-- restored snapshot, a replica promoted in a failover), so a tier whose meta carries another
-- run_id has not been checked against the ledger since Redis may have gone back in time.
local function current_run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
