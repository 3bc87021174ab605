-- wrk script: counts responses whose status is not the expected one (first argument)
-- and prints one line: SOAK <requests> <wrong answers + socket errors> <p99 ms>.
-- The second argument is a pause in milliseconds before each request of a connection
-- (0: as fast as possible), which caps the load a connection offers.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = tonumber(args[1])
  pause = tonumber(args[2] or "0")
  wrong = 0
end

function delay()
  return pause
end

function response(status, headers, body)
  if status ~= expected then
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local bad = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  for _, t in ipairs(threads) do
    bad = bad + t:get("wrong")
  end
  io.write(string.format("SOAK %d %d %.2f\n", summary.requests, bad, latency:percentile(99) / 1000))
end
