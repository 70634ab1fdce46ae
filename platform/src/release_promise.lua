-- release_promise(promises, promised_at, order_no): lets go of the tickets promised to an
-- accepted order (see stock_keys.rs, "Admission"); nothing when it holds none. Keys under the
-- hash tag of the tier's session.
local function release_promise(promises, promised_at, order_no)
  local qty = redis.call('HGET', promises, order_no)
  if qty then
    redis.call('HDEL', promises, order_no)
    redis.call('HINCRBY', promises, '_total', -tonumber(qty))
    redis.call('ZREM', promised_at, order_no)
  end
end
