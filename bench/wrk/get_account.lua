-- GET /accounts/{id} of a random stored account, checking every answer.
-- Environment: BENCH_WRK_LIB, this folder; BENCH_WRK_STORED, how many accounts were
-- stored beforehand, with ids 1..N and usernames "seeded" .. id on 7 digits (see
-- bench/growth.py); and what common.lua reads (the client token among it).
--
-- Each thread keeps the ids it asked for and has not yet seen answered: an answer
-- is good only if it is a 200 for one of them, with that id's username, active.

dofile(assert(os.getenv("BENCH_WRK_LIB")) .. "/common.lua")

function init(_)
  stored = tonumber(assert(os.getenv("BENCH_WRK_STORED")))
  math.randomseed(os.time() + 7919 * thread_id)
  pending = {}
  headers = client_headers({})
end

function request()
  local id = math.random(1, stored)
  pending[id] = (pending[id] or 0) + 1
  return wrk.format("GET", "/accounts/" .. id, headers)
end

function response(status, _, body)
  local id = tonumber(string.match(body, '"id":(%d+)'))
  if status == 200 and id ~= nil and (pending[id] or 0) > 0
      and string.find(body, string.format('"username":"seeded%07d"', id), 1, true)
      and string.find(body, '"status":"active"', 1, true) then
    pending[id] = pending[id] - 1
    count_good()
  else
    count_bad(status, body)
  end
end
