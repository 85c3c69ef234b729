-- wrk script: POST one fixed body (JSON or v2 binary) and print a machine-readable summary.
--
-- Environment (read by every wrk thread):
--   BENCH_BODY            path of the request body file (read once per thread, sent as-is)
--   BENCH_CONTENT_TYPE    Content-Type header (default application/json)
--   BENCH_HEADER_LENGTH   optional Inference-Header-Content-Length (v2 binary tensor extension)

local path = assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local header_length = os.getenv("BENCH_HEADER_LENGTH")
if header_length ~= nil and header_length ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header_length
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
