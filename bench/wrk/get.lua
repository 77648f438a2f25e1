-- wrk -s get.lua URL: plain GETs of URL (path and query as given), with the RESULT report.
dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "report.lua")
done = report
