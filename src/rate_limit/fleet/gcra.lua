-- A generic cell rate algorithm for one provider's requests and tokens, run
-- atomically on Redis's own clock, so that every process shares one budget.
--
-- KEYS[1]: when the requests' next unit is due (microseconds since the epoch)
-- KEYS[2]: the same for tokens
-- ARGV[1]: requests a minute (0: not limited)
-- ARGV[2]: requests that may go back to back (the burst, at least 1)
-- ARGV[3]: tokens a minute (0: not limited)
-- ARGV[4]: the tokens this call declares
-- ARGV[5]: the longest the call may wait for its start, in microseconds
-- ARGV[6]: how many starts to reserve (1; more for a lease)
--
-- Returns {1, wait} when the start is reserved `wait` microseconds from now,
-- or {0, wait} when that wait would be too long: then nothing is reserved.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local rpm = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local permits = tonumber(ARGV[6])
-- Ten years: a charge longer than this is as good as forever.
local forever = 315360000000000

local function due(key)
  local value = redis.call('GET', key)
  return math.max(value and tonumber(value) or now, now)
end

local function store(key, at)
  local ttl_ms = math.ceil((at - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', at), 'PX', ttl_ms)
end

local start = now
local requests_due, tokens_due, emission
if rpm > 0 then
  emission = 60000000 / rpm
  requests_due = due(KEYS[1])
  start = math.max(start, requests_due - emission * (burst - 1))
end
if tpm > 0 then
  tokens_due = due(KEYS[2])
  start = math.max(start, tokens_due)
end

local wait = start - now
if wait > max_wait then
  return {0, math.floor(wait)}
end
if rpm > 0 then
  store(KEYS[1], math.max(requests_due, start) + math.min(emission * permits, forever))
end
if tpm > 0 and cost > 0 then
  store(KEYS[2], math.max(tokens_due, start) + math.min(60000000 * cost / tpm, forever))
end
return {1, math.floor(wait)}
