-- What every benchmark script shares: thread ids, the good/bad count, the results file,
-- and the client token every request presents.
-- Environment: BENCH_WRK_RESULTS, the file to write the results to, as one JSON object;
-- BENCH_WRK_TOKEN_FILE, the file holding the client token (empty or unset: none is sent).

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

good = 0
bad = 0
example = ""

-- The headers every request carries: ``Authorization: Bearer TOKEN`` if a token file is given.
function client_headers(headers)
  local path = os.getenv("BENCH_WRK_TOKEN_FILE")
  if path ~= nil and path ~= "" then
    local file = assert(io.open(path, "r"))
    local token = string.match(file:read("*a"), "^%s*(.-)%s*$")
    file:close()
    assert(token ~= "", "the token file " .. path .. " is empty")
    headers["Authorization"] = "Bearer " .. token
  end
  return headers
end

function count_good()
  good = good + 1
end

function count_bad(status, body)
  bad = bad + 1
  if example == "" then
    example = status .. " " .. string.sub(body, 1, 200)
  end
end

-- Just enough escaping for an example answer to sit in a JSON string.
local function json_text(text)
  return (string.gsub(string.gsub(text, '[%c"\\]', " "), "[\128-\255]", "?"))
end

function done(summary, latency, _)
  local good_total, bad_total, first_example = 0, 0, ""
  for _, thread in ipairs(threads) do
    good_total = good_total + thread:get("good")
    bad_total = bad_total + thread:get("bad")
    if first_example == "" then
      first_example = thread:get("example")
    end
  end
  local errors = summary.errors
  local out = assert(io.open(assert(os.getenv("BENCH_WRK_RESULTS")), "w"))
  out:write(string.format(
    '{"good":%d,"bad":%d,"responses":%d,"duration_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,"example":"%s"}\n',
    good_total, bad_total, summary.requests, summary.duration,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, json_text(first_example)))
  out:close()
end
