-- wrk -s movie_by_id.lua http://host:port -- N : GET /api/movies/{id}, id uniformly random in 1..N.
dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "report.lua")
done = report

local count = 1000
local thread_number = 0

setup = function(thread)
  thread_number = thread_number + 1
  thread:set("seed", thread_number)
end

init = function(args)
  count = tonumber(args[1] or "1000")
  math.randomseed(os.time() * 1000 + (seed or 0))
end

request = function()
  return wrk.format("GET", "/api/movies/" .. math.random(1, count))
end
