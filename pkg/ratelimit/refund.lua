-- refund.lua: give back one request charged by take.lua, by moving each
-- counter's TAT back by one emission interval.
--
-- KEYS[i]  counter keys, all in one hash slot.
-- ARGV[i]  emission interval of KEYS[i], in microseconds.
-- Returns the number of counters refunded.

-- Redis >= 5: effects replication, as in take.lua.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local refunded = 0
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat ~= nil then
    tat = tat - tonumber(ARGV[i])
    if tat <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
    end
    refunded = refunded + 1
  end
end
return refunded
