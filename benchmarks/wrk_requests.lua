-- Sends each request of a prepared list exactly once, spread over wrk's threads, and prints a JSON
-- summary. The list (WRK_REQUESTS) has one request a line: METHOD, PATH, AUTHORIZATION, BODY, separated
-- by tabs. Each thread stops after WRK_COUNT answers in all, divided among the threads, and says
-- "done" on standard output; the few extra lines cover requests still in flight at that moment, whose
-- answers are not counted. wrk itself waits out its -d duration, so the driver interrupts it (SIGINT)
-- once every thread is done, and takes the duration from there.
local thread_count = tonumber(os.getenv("WRK_THREADS"))
local wanted = tonumber(os.getenv("WRK_COUNT"))
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  lines = {}
  local i = 0
  for line in io.lines(os.getenv("WRK_REQUESTS")) do
    if i % thread_count == id then
      table.insert(lines, line)
    end
    i = i + 1
  end
  position = 0
  answered = 0
  quota = math.floor(wanted / thread_count)
  if id < wanted % thread_count then
    quota = quota + 1
  end
end

function request()
  position = position + 1
  local line = lines[math.min(position, #lines)]
  local method, path, authorization, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  local headers = { ["Content-Type"] = "application/json" }
  if authorization ~= "" then
    headers["Authorization"] = authorization
  end
  if body == "" then
    body = nil
  end
  return wrk.format(method, path, headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if answered == quota then
    io.write("done\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  ))
end
