-- The request one load run sends, for wrk; bench/run.py sets it through the environment:
--   BENCH_METHOD  GET or POST
--   BENCH_TOKEN   a bearer token (optional)
--   BENCH_BODY    a JSON body (optional); each "@N@" in it becomes a value unique to the
--                 request, so every POST creates a distinct contact
--   BENCH_TAG     makes those values unique across runs
-- The path is the URL's. done() prints one line "BENCH_RESULT {json}" for the harness.

local method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN") or ""
local body = os.getenv("BENCH_BODY") or ""
local tag = os.getenv("BENCH_TAG") or "0"

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads + 1)
  table.insert(threads, thread)
end

local headers = {}
local fixed = nil
local sent = 0

function init(args)
  if token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  if body ~= "" then
    headers["Content-Type"] = "application/json"
  end
  if not string.find(body, "@N@", 1, true) then
    fixed = wrk.format(method, nil, headers, body ~= "" and body or nil)
  end
end

function request()
  if fixed then
    return fixed
  end
  sent = sent + 1
  local unique = tag .. "-" .. thread_number .. "-" .. sent
  return wrk.format(method, nil, headers, (string.gsub(body, "@N@", unique)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
