-- withdraw(order_no, user_id, request_id, existing): undoes an admission whose order was not
-- written (the database refused it, or the request already had an order): lets go of the
-- promise; the request then names `existing` (the order it already had), or is forgotten when
-- `existing` is empty and it still names this order number.
-- KEYS as in admit.lua.
local promises, promised_at, requests = KEYS[2], KEYS[3], KEYS[4]
local order_no, asked = ARGV[1], ARGV[2] .. ' ' .. ARGV[3]
release_promise(promises, promised_at, order_no)
if ARGV[4] ~= '' then
  redis.call('HSET', requests, asked, ARGV[4])
elseif redis.call('HGET', requests, asked) == order_no then
  redis.call('HDEL', requests, asked)
end
return 1
