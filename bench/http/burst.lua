-- wrk script of bench/hot.sh: POST /guid (a durable create nobody reads) until the first script
-- argument's count of responses has arrived, then stop (wrk's scripts/stop.lua).
-- done() prints: RESULT <req/s> <p99 ms> <non-2xx responses> <socket errors>

local limit = 200000
local received = 0
local body = '{"user":"burst","team":"perf"}'

function init(args)
  limit = tonumber(args[1]) or limit
end

function request()
  return wrk.format("POST", "/guid", nil, body)
end

function response(status, headers, body)
  received = received + 1
  if received >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("RESULT %.0f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(99) / 1000,
    errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
