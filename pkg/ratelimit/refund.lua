-- refund.lua: give back one request charged by take.lua, by moving each
-- counter's TAT back by one emission interval.
--
-- KEYS[i]  counter keys, all in one hash slot.
-- ARGV[i]  emission interval of KEYS[i], in microseconds: the one a
--          counter stored without its own was charged at.
-- Returns the number of counters refunded.

-- Redis >= 5: effects replication, as in take.lua.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local refunded = 0
for i = 1, #KEYS do
  -- A counter is "TAT:interval" (see take.lua), or a bare TAT.
  local v = redis.call('GET', KEYS[i])
  local tat, charged = nil, tonumber(ARGV[i])
  if v then
    local sep = string.find(v, ':', 1, true)
    if sep then
      tat = tonumber(string.sub(v, 1, sep - 1))
      charged = tonumber(string.sub(v, sep + 1)) or charged
    else
      tat = tonumber(v)
    end
  end
  if tat ~= nil then
    -- One request at the interval it was charged at.
    tat = tat - charged
    if tat <= now then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%d:%d', tat, charged), 'PX', math.ceil((tat - now) / 1000))
    end
    refunded = refunded + 1
  end
end
return refunded
