-- wrk script for `python -m bench ingest`: every request is a distinct, signed webhook.
--
--   wrk -t<T> -c<C> -d<S>s -s bench/ingest.lua <url> -- <requests file> <path>
--
-- The requests file (written by bench/ingest.py) holds one request per line:
-- "<Shippo-Auth-Signature value>\t<JSON body>". Thread n of T sends lines n, n+T, n+2T, ...
-- once each, so no body is ever sent twice; a thread that runs out stops (and says so).
-- Every answer is checked: only "200 … queued" counts as ok. done() prints one JSON line.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  thread:set("nthreads", 0)  -- filled in below, once every thread exists
  table.insert(threads, thread)
  for _, t in ipairs(threads) do t:set("nthreads", #threads) end
end

function init(args)
  local file, path = args[1], args[2]
  requests_list = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      local tab = string.find(line, "\t", 1, true)
      local headers = {
        ["Content-Type"] = "application/json",
        ["Shippo-Auth-Signature"] = string.sub(line, 1, tab - 1),
      }
      table.insert(requests_list, wrk.format("POST", path, headers, string.sub(line, tab + 1)))
    end
    i = i + 1
  end
  next_index = 1
  sent, ok, bad, exhausted = 0, 0, 0, 0
end

function request()
  local r = requests_list[next_index]
  if r == nil then
    exhausted = 1
    wrk.thread:stop()
    return requests_list[#requests_list]  -- never sent: the thread is stopping
  end
  next_index = next_index + 1
  sent = sent + 1
  return r
end

function response(status, headers, body)
  if status == 200 and string.find(body, '"queued"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
end

function done(summary, latency, requests)
  local s, o, b, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); o = o + t:get("ok"); b = b + t:get("bad"); x = x + t:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    '{"duration_us":%d,"completed":%d,"sent":%d,"ok":%d,"bad":%d,"exhausted_threads":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, s, o, b, x, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
