-- wrk -s post_order.lua http://host:port/api/billing : the same valid order, POSTed again and again.
dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "report.lua")
done = report

wrk.method = "POST"
wrk.body = '{"user_id": 7, "number_of_items": "2", "total_amount": "20.50"}'
wrk.headers["Content-Type"] = "application/json"
