-- take.lua: decide and charge the limits of one decision, all-or-nothing.
--
-- KEYS[i]  counter keys, all in one hash slot; a counter holds its TAT
--          (theoretical arrival time) in microseconds of the server clock
--          and the emission interval it was charged at, as "TAT:interval"
--          (a bare "TAT", as earlier versions wrote, is read as charged
--          at this request's interval).
-- ARGV[1]  "1" to charge when every limit allows, "0" to only report.
-- ARGV[2i], ARGV[2i+1]  emission interval and window of KEYS[i], in
--          microseconds (see gcra.go).
-- Returns {allowed, now, tat_1, ..., tat_n}: allowed is 1 or 0, now the
-- server time in microseconds, tat_i the TAT of KEYS[i] before this request,
-- in terms of interval_i (a tier change keeps the requests spent, not the
-- time: see gcra.go), clamped to [now, now + window_i].

-- Redis >= 5 replicates the script's effects (the SETs), not the script,
-- so writing after the non-deterministic TIME is allowed; Redis 3.2 and 4
-- needed redis.replicate_commands() first, one more call on every run.

-- The server's clock, not the caller's: replicas' clocks differ.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local result = {0, now}
local next_tat = {}
local allowed = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local tat = nil
  -- A key listed twice is charged twice.
  for j = 1, i - 1 do
    if KEYS[j] == KEYS[i] then
      tat = next_tat[j]
    end
  end
  if tat == nil then
    -- GET returns false for a missing key.
    local v = redis.call('GET', KEYS[i])
    if v then
      local sep = string.find(v, ':', 1, true)
      if sep then
        tat = tonumber(string.sub(v, 1, sep - 1))
        local charged = tonumber(string.sub(v, sep + 1))
        if tat and charged and charged > 0 and charged ~= interval and tat > now then
          -- The same requests still to refill, at this interval
          -- (gcra.rescale). Lua's numbers are doubles: the requests are
          -- counted first, so that a whole number of them stays whole,
          -- and a rounding error below a microsecond does not lose one.
          tat = now + math.floor((tat - now) / charged * interval + 0.001)
        end
      else
        tat = tonumber(v)
      end
    end
    tat = tat or now
  end
  if tat < now then
    tat = now
  end
  if tat > now + window then
    tat = now + window
  end
  result[i + 2] = tat
  next_tat[i] = tat + interval
  if next_tat[i] - now > window then
    allowed = 0
  end
end
result[1] = allowed

if allowed == 1 and ARGV[1] == '1' then
  for i = 1, #KEYS do
    -- The key expires when the counter is full again: then it equals a
    -- missing key.
    local ttl = math.ceil((next_tat[i] - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%d:%d', next_tat[i], tonumber(ARGV[2 * i])), 'PX', ttl)
  end
end
return result
