-- wrk -s post_movie.lua http://host:port : POST /api/movies with a small valid movie, numbered.
dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "report.lua")
done = report

local n = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
  n = n + 1
  local body = '{"title": "Bench movie ' .. n .. '", "description": "Posted by bench/gateway."}'
  return wrk.format("POST", "/api/movies", headers, body)
end
