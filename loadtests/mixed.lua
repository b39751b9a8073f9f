-- wrk: product queries over a large catalog, one of three ways (MIX_MODE):
--   zipf  ranks drawn from a Zipf law (exponent MIX_ZIPF_S, 1.0) over
--         MIX_PRODUCTS products: a few are hot, most are rarely seen,
--         as storefront traffic is;
--   hot   uniformly among the MIX_HOT most popular (warm by then), at a
--         set pace with MIX_DELAY_MS;
--   cold  products never asked before: each thread walks down its own
--         stripe from the end of the catalog (or from MIX_COLD_FROM, so a
--         second storm starts below where the first one stopped), so every
--         request is a miss;
--   sweep every product in turn, from the end of the catalog down (then
--         round again): the whole catalog into L1.
-- The query is browse.lua's; `loadtests/run mixed-browse` sets the rest.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local query = "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }"
local mode = os.getenv("MIX_MODE") or "zipf"
local products = tonumber(os.getenv("MIX_PRODUCTS") or "100000")
local hot = tonumber(os.getenv("MIX_HOT") or "200")
local s = tonumber(os.getenv("MIX_ZIPF_S") or "1.0")
local cold_from = tonumber(os.getenv("MIX_COLD_FROM") or products)

local threads = 0
function setup(thread)
  thread:set("seed", math.random(1, 1000000))
  thread:set("stripe", threads)
  threads = threads + 1
end

local cumulative = {}
local next_cold

function init(args)
  math.randomseed(seed or os.time())
  if mode == "zipf" then
    local total = 0
    for rank = 1, products do
      total = total + 1 / rank ^ s
      cumulative[rank] = total
    end
    for rank = 1, products do
      cumulative[rank] = cumulative[rank] / total
    end
  end
  -- cold: 64 stripes of the catalog's second half, walked from the top
  -- down; sweep: one walk over it all (run it with one thread).
  next_cold = cold_from - (stripe or 0) * math.floor(products / 128)
end

local function zipf_rank()
  local u = math.random()
  local lo, hi = 1, products
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cumulative[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function request()
  local rank
  if mode == "hot" then
    rank = math.random(1, hot)
  elseif mode == "cold" or mode == "sweep" then
    rank = next_cold
    next_cold = next_cold - 1
    if next_cold < 1 then next_cold = products end
  else
    rank = zipf_rank()
  end
  local body = string.format('{"query":"%s","variables":{"id":"prod-%06d"}}', query, rank)
  return wrk.format(nil, nil, nil, body)
end

-- MIX_DELAY_MS: each connection waits this long before each request, so
-- the load has a set pace instead of saturating the server (then a change
-- in latency is delay, not a share of the CPU given up).
local pause = tonumber(os.getenv("MIX_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end
