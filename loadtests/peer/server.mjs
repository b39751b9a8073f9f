// The peer the load runner measures beside Moat: GraphQL Yoga with its
// response-cache plugin, resolving the subset of Moat's schema that the
// cache-hit query uses from the same upstream simulator, over HTTP, the way
// Moat does (src/upstream/pim.rs, src/upstream/erp.rs). A repeated identical
// query is answered from the response cache, which is the peer's
// equivalent of Moat's warm L1.
//
//   node loadtests/peer/server.mjs <simulator URL> [listen address]
//   PEER_UPSTREAM_URL=http://127.0.0.1:9000 PEER_LISTEN=127.0.0.1:0 node server.mjs
//
// Prints `peer: listening on http://ADDR` once bound (GraphQL on /graphql).
// One process: Node runs JavaScript on one thread, so on a box where Moat
// gets several server CPUs the peer still uses about one of them.

import { createServer } from "node:http";
import { createSchema, createYoga } from "graphql-yoga";
import { useResponseCache } from "@graphql-yoga/plugin-response-cache";

const upstream = (process.argv[2] ?? process.env.PEER_UPSTREAM_URL ?? "").replace(/\/+$/, "");
const listen = process.argv[3] ?? process.env.PEER_LISTEN ?? "127.0.0.1:0";
if (!upstream) {
  console.error("usage: server.mjs <simulator URL> [listen address, e.g. 127.0.0.1:0]");
  process.exit(2);
}
const colon = listen.lastIndexOf(":");
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));
if (colon < 0 || !host || !Number.isInteger(port)) {
  console.error(`peer: cannot listen on ${JSON.stringify(listen)}; want HOST:PORT`);
  process.exit(2);
}

// What Moat's default config (config/moat.toml) decides for these fields:
// anonymous shoppers see the `default` segment in EUR, and stock at or
// below 5 is LOW_STOCK.
const SEGMENT = "default";
const DEFAULT_CURRENCY = "EUR";
const CURRENCIES = new Set(["EUR", "USD"]);
const LOW_STOCK_THRESHOLD = 5;
// Seconds a cached response is served (far longer than a measured run).
const CACHE_TTL_SECONDS = 60;

// The subset of schema/storefront.graphql the cache-hit query reads, with
// the same names and types, so the same request body works unchanged.
const typeDefs = /* GraphQL */ `
  scalar Decimal

  type Query {
    product(id: ID, sku: String): Product
  }

  type Product {
    id: ID!
    sku: String!
    name: String!
    price(currencyCode: String): ProductPrice
    availability: Availability
  }

  type ProductPrice {
    price: Money!
    segment: String!
  }

  type Money {
    amount: Decimal!
    currencyCode: String!
  }

  type Availability {
    status: AvailabilityStatus!
    quantity: Int
  }

  enum AvailabilityStatus {
    IN_STOCK
    LOW_STOCK
    OUT_OF_STOCK
    UNKNOWN
  }
`;

// GET a protocol v1 list route and return its `items`. Node's built-in
// fetch keeps connections to the simulator alive on its own.
async function items(path, params) {
  const url = `${upstream}${path}?${new URLSearchParams(params)}`;
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (!response.ok) {
    throw new Error(`upstream ${path} answered ${response.status}`);
  }
  const body = await response.json();
  if (!Array.isArray(body?.items)) {
    throw new Error(`upstream ${path} sent no items list`);
  }
  return body.items;
}

// Integer minor units as a decimal string with two minor digits (both
// currencies the simulator prices in have two), as Moat's Decimal.
function decimal(minor) {
  const abs = Math.abs(minor);
  const sign = minor < 0 ? "-" : "";
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

const resolvers = {
  Query: {
    async product(_, { id, sku }) {
      if ((id == null) === (sku == null)) {
        throw new Error("give exactly one of id and sku");
      }
      const found = await items("/pim/v1/products", id != null ? { ids: id } : { skus: sku });
      return found[0] ?? null;
    },
  },
  Product: {
    async price(product, { currencyCode }) {
      const currency = currencyCode ?? DEFAULT_CURRENCY;
      if (!CURRENCIES.has(currency)) {
        throw new Error(`unknown currency ${JSON.stringify(currency)}`);
      }
      const [price] = await items("/erp/v1/prices", {
        skus: product.sku,
        segment: SEGMENT,
        currency,
      });
      if (!price) return null;
      return {
        price: { amount: decimal(price.amount), currencyCode: price.currency },
        segment: price.segment,
      };
    },
    async availability(product) {
      const [stock] = await items("/erp/v1/inventory", { skus: product.sku });
      if (!stock) return null;
      const n = stock.available;
      const status = n === 0 ? "OUT_OF_STOCK" : n <= LOW_STOCK_THRESHOLD ? "LOW_STOCK" : "IN_STOCK";
      return { status, quantity: n };
    },
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: "/graphql",
  graphiql: false,
  logging: "warn",
  plugins: [
    useResponseCache({
      // One cache for every client: the query is anonymous, as Moat's
      // cache-hit query is.
      session: () => null,
      ttl: CACHE_TTL_SECONDS * 1000,
    }),
  ],
});

const server = createServer(yoga);
server.listen(port, host, () => {
  const address = server.address();
  console.log(`peer: listening on http://${address.address}:${address.port}`);
});

// Stop quietly when the runner stops us.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
