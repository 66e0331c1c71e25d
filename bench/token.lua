-- wrk script for the token-endpoint benchmark: every request is a client_credentials grant
-- carrying the next never-sent line of an assertions file ("<kind> <jws>", see assertions.py).
-- A line "<kind> <jws> <proof>" also sends its DPoP proof (RFC 9449) as the DPoP header.
--
-- Environment (done() runs in its own Lua state, so everything is passed this way):
--   BENCH_ASSERTIONS  the assertions file (required)
--   BENCH_START       0-based first line to send (default 0)
--   BENCH_THREADS     wrk -t value (default 1); thread i sends lines START+i, START+i+T, ...
--   BENCH_JSON        where to write the JSON summary (optional)
--
-- Counted per response: 200 with "access_token" (ok; of those, dpop_tokens with token_type
-- DPoP), 200 without it (bad_200), 400/401
-- (rejected, bucketed by the first words of error_description), anything else (other).
-- Counted per request: the kinds sent. wrk gives no request/response pairing, so the
-- correctness check (done by run.py) compares these totals.

local PREFIX = "grant_type=client_credentials"
  .. "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
  .. "&client_assertion="

local all_threads = {}

function setup(thread)
  thread:set("tid", #all_threads)
  all_threads[#all_threads + 1] = thread
end

local lines, kinds, numbers, proofs = {}, {}, {}, {}
local count, pos = 0, 0
local head
local verified = false

sent = 0
sent_kinds = {}
ok = 0
dpop_tokens = 0
bad_200 = 0
rejected = 0
other = 0
statuses = {}
reasons = {}
first_line = -1
last_line = -1
exhausted = false
sample = ""

function init(args)
  local path = os.getenv("BENCH_ASSERTIONS") or error("BENCH_ASSERTIONS is not set")
  local start = tonumber(os.getenv("BENCH_START") or "0")
  local step = tonumber(os.getenv("BENCH_THREADS") or "1")
  local me = tid or 0
  local n = 0
  for line in io.lines(path) do
    if n >= start and (n - start) % step == me and #line > 2 then
      count = count + 1
      kinds[count] = line:sub(1, 1)
      local sp = line:find(" ", 3, true)
      lines[count] = sp and line:sub(3, sp - 1) or line:sub(3)
      proofs[count] = sp and ("DPoP: " .. line:sub(sp + 1) .. "\r\n") or ""
      numbers[count] = n
    end
    n = n + 1
  end
  local host = wrk.headers["Host"] or (wrk.host .. ":" .. tostring(wrk.port))
  head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host
    .. "\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
end

local function build(i)
  local body = PREFIX .. lines[i]
  return head .. proofs[i] .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

function request()
  if not verified and (tid or 0) == 0 then
    -- wrk calls request() once on thread 0 to check the request before connecting;
    -- that request is never sent, so it must not use up a line.
    verified = true
    return build(math.min(pos + 1, count))
  end
  verified = true
  pos = pos + 1
  if pos > count then
    if not exhausted then
      exhausted = true
      wrk.thread:stop()
    end
    pos = count  -- sent again only while the thread stops; flagged as exhausted
  end
  sent = sent + 1
  local k = kinds[pos]
  sent_kinds[k] = (sent_kinds[k] or 0) + 1
  if first_line < 0 then first_line = numbers[pos] end
  last_line = numbers[pos]
  return build(pos)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    if body and body:find('"access_token"', 1, true) then
      ok = ok + 1
      if body:find('"token_type"%s*:%s*"DPoP"') then dpop_tokens = dpop_tokens + 1 end
    else
      bad_200 = bad_200 + 1
      if sample == "" then sample = "200 without access_token: " .. tostring(body):sub(1, 200) end
    end
  elseif status == 400 or status == 401 then
    rejected = rejected + 1
    local d = body and body:match('"error_description"%s*:%s*"([^"]*)"') or (body and body:match('"error"%s*:%s*"([^"]*)"')) or "?"
    d = d:sub(1, 60)
    reasons[d] = (reasons[d] or 0) + 1
  else
    other = other + 1
    if sample == "" then sample = tostring(status) .. ": " .. tostring(body):sub(1, 200) end
  end
end

local function q(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function obj(t, key_quote)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = q(k) .. ": " .. tostring(v) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local tot = {sent = 0, ok = 0, dpop_tokens = 0, bad_200 = 0, rejected = 0, other = 0}
  local sk, st, rs = {}, {}, {}
  local first, last, ex, smp = nil, -1, false, ""
  for _, t in ipairs(all_threads) do
    for k, _ in pairs(tot) do tot[k] = tot[k] + (t:get(k) or 0) end
    for k, v in pairs(t:get("sent_kinds") or {}) do sk[k] = (sk[k] or 0) + v end
    for k, v in pairs(t:get("statuses") or {}) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(t:get("reasons") or {}) do rs[k] = (rs[k] or 0) + v end
    local f = t:get("first_line") or -1
    if f >= 0 and (first == nil or f < first) then first = f end
    local l = t:get("last_line") or -1
    if l > last then last = l end
    if t:get("exhausted") then ex = true end
    if smp == "" then smp = t:get("sample") or "" end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format("[token.lua] completed=%d ok=%d (DPoP %d) rejected=%d bad200=%d other=%d socket=%d/%d/%d/%d %.1f ok/s%s\n",
    summary.requests, tot.ok, tot.dpop_tokens, tot.rejected, tot.bad_200, tot.other, e.connect, e.read, e.write, e.timeout,
    tot.ok / secs, ex and " EXHAUSTED" or ""))
  local out = os.getenv("BENCH_JSON")
  if out and #out > 0 then
    local f = assert(io.open(out, "w"))
    f:write("{")
    f:write(string.format('"duration_s": %.3f, "completed": %d, ', secs, summary.requests))
    f:write(string.format('"sent": %d, "ok": %d, "dpop_tokens": %d, "bad_200": %d, "rejected": %d, "other": %d, ',
      tot.sent, tot.ok, tot.dpop_tokens, tot.bad_200, tot.rejected, tot.other))
    f:write('"sent_kinds": ' .. obj(sk) .. ', "statuses": ' .. obj(st) .. ', "reasons": ' .. obj(rs) .. ', ')
    f:write(string.format('"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ',
      e.connect, e.read, e.write, e.timeout))
    f:write(string.format('"latency_ms": {"mean": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}, ',
      latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000))
    f:write(string.format('"first_line": %d, "last_line": %d, "exhausted": %s, "sample": %s}\n',
      first or -1, last, tostring(ex), q(smp)))
    f:close()
  end
end
