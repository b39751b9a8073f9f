-- wrk script: one GraphQL request, the same bytes every time.
--
-- By default a POST of the file named by WRK_BODY_FILE (the runner writes
-- it per scenario), so the query lives in one place: `loadtests/run`.
-- WRK_METHOD=GET sends a GET instead, with no body: the query travels in
-- the URL given to wrk (`/graphql?query=…`, or `?extensions=…` for a
-- persisted query by hash). WRK_HEADERS adds headers, one `Name: value` a
-- line (`Authorization: Bearer …` for a signed-in customer). Setting
-- wrk.method/headers/body (and no request() function) lets wrk build the
-- request once and reuse it, so the script costs nothing per request.

local method = os.getenv("WRK_METHOD")
if method == nil or method == "" then
  method = "POST"
end
wrk.method = method

if method == "POST" then
  local path = os.getenv("WRK_BODY_FILE")
  if path == nil or path == "" then
    error("set WRK_BODY_FILE to a file holding the JSON request body")
  end
  local file = assert(io.open(path, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
end

for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name == nil then
    error("WRK_HEADERS: not a `Name: value` line: " .. line)
  end
  wrk.headers[name] = value
end
