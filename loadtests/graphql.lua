-- wrk script: POST one GraphQL request, the same bytes every time.
--
-- The body is the file named by WRK_BODY_FILE (the runner writes it per
-- scenario), so the query lives in one place: `loadtests/run`. Setting
-- wrk.method/headers/body (and no request() function) lets wrk build the
-- request once and reuse it, so the script costs nothing per request.

local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
  error("set WRK_BODY_FILE to a file holding the JSON request body")
end
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = body
