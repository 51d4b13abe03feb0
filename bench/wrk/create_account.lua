-- POST /accounts with a new username each time, checking every answer.
-- Environment: BENCH_WRK_LIB, this folder; BENCH_WRK_PREFIX, the run's username
-- prefix (unique per run); and what common.lua reads (the client token among it).
--
-- Answers come back in any order across a thread's connections, so each thread
-- keeps the usernames it sent and has not yet seen answered: an answer is good
-- only if it is a 201 whose body says "status":"created" for one of them.

dofile(assert(os.getenv("BENCH_WRK_LIB")) .. "/common.lua")

function init(_)
  prefix = assert(os.getenv("BENCH_WRK_PREFIX"))
  counter = 0
  pending = {}
  headers = client_headers({ ["Content-Type"] = "application/json" })
end

function request()
  counter = counter + 1
  local username = prefix .. "t" .. thread_id .. "n" .. counter
  pending[username] = true
  local body = '{"username":"' .. username .. '","password":"bench-password-1"}'
  return wrk.format("POST", "/accounts", headers, body)
end

function response(status, _, body)
  local username = string.match(body, '"username":"([^"]*)"')
  if status == 201 and username ~= nil and pending[username]
      and string.find(body, '"status":"created"', 1, true) then
    pending[username] = nil
    count_good()
  else
    count_bad(status, body)
  end
end
