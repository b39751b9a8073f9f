-- wrk: POSTs a product query for a random product of the 10,000 in the
-- default simulator catalog, so a run mixes cache hits and cold misses as
-- campaign traffic does.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local query = "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }"

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

function request()
  local id = string.format("prod-%06d", math.random(1, 10000))
  local body = string.format('{"query":"%s","variables":{"id":"%s"}}', query, id)
  return wrk.format(nil, nil, nil, body)
end
