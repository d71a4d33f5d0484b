-- wrk script of bench/http.sh: one request mix per run, chosen by the first script argument.
--   hello  GET /guid/<random live GUID> (sent to the hello-world baseline: same request bytes)
--   get    GET /guid/<random live GUID>
--   post   POST /guid with a small JSON body (a durable create)
--   patch  PATCH /guid/<random live GUID> with a changing body (a durable update)
--   mix    90% get, 10% patch
--   stale  GET /guid/<random live GUID> with Cache-Control: max-stale=1 (bounded staleness)
--   scan   GET /guid/<GUID> of each line in turn, from a random start (to warm a cache)
-- The second argument is a file of live GUIDs, one per line.
-- done() prints: RESULT <req/s> <p99 ms> <non-2xx responses> <socket errors>

local mode = "get"
local guids = {}
local counter = 0

function init(args)
  mode = args[1] or "get"
  if args[2] then
    for line in io.lines(args[2]) do
      if #line > 0 then guids[#guids + 1] = line end
    end
  end
  if #guids == 0 then guids[1] = "9094E4C980C74043A4B586B420E69DDF" end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

local post_body = '{"user":"bench user","team":"perf"}'

local function get()
  return wrk.format("GET", "/guid/" .. guids[math.random(#guids)])
end

local stale_headers = { ["Cache-Control"] = "max-stale=1" }

local function stale()
  return wrk.format("GET", "/guid/" .. guids[math.random(#guids)], stale_headers)
end

local function patch()
  counter = counter + 1
  return wrk.format("PATCH", "/guid/" .. guids[math.random(#guids)], nil, '{"n":' .. counter .. '}')
end

local next_line = nil

local function scan()
  next_line = (next_line or math.random(#guids)) % #guids + 1
  return wrk.format("GET", "/guid/" .. guids[next_line])
end

function request()
  if mode == "scan" then
    return scan()
  elseif mode == "post" then
    return wrk.format("POST", "/guid", nil, post_body)
  elseif mode == "patch" then
    return patch()
  elseif mode == "stale" then
    return stale()
  elseif mode == "mix" then
    if math.random(10) == 1 then return patch() end
    return get()
  end
  return get()
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("RESULT %.0f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(99) / 1000,
    errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
