-- wrk script for bench/compare's `wrk` case: keep-alive GETs through an HTTP forward proxy.
--   wrk -c64 -t2 -d3s -s tools/load/wrk_proxy.lua http://PROXY_IP:PROXY_PORT/
-- with, from the environment:
--   WRK_TARGET   http://IP:PORT/ of the origin: sent as the absolute URI (proxy form); unset:
--                the origin-form "/" to the address on the command line (no proxy)
--   WRK_AUTH     user:pass, sent as Proxy-Authorization: Basic (unset: none)
--   WRK_HEADERS  extra "Name: value" headers separated by "|" (e.g. Proxy-Connection: keep-alive)
-- done() prints one line `WRK_JSON {...}` with requests, duration, errors and the latency
-- percentiles in microseconds, for bench/compare to parse.

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  return ((s:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local target = os.getenv("WRK_TARGET")
if target and target ~= "" then
  wrk.path = target
  wrk.headers["Host"] = target:match("^%a+://([^/]+)")
end
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Proxy-Authorization"] = "Basic " .. base64(auth)
end
local extra = os.getenv("WRK_HEADERS")
if extra and extra ~= "" then
  for h in extra:gmatch("[^|]+") do
    local k, v = h:match("^%s*([^:]+):%s*(.-)%s*$")
    if k then wrk.headers[k] = v end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "err_connect": %d, ' ..
    '"err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
    '"mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
