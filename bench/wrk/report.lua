-- Shared by the wrk scripts of bench/gateway and bench/billing: after a run, print one machine-readable line
--   RESULT {"requests": …, "duration_us": …, "non_2xx": …, "socket_errors": …, "p50_us": …, "p99_us": …}
report = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end

