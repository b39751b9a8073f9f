// Apollo Client reading a product page while the ERP is down, as a
// storefront would: errorPolicy "all" keeps the partial data, which
// InMemoryCache must store and give back whole. A key missing from the
// answer would be missing data to it: it warns "Missing field ..." while
// writing and `readQuery` gives null. Every console call (Apollo's
// invariant logging included) is captured, so stdout holds one JSON line:
// {"data", "errors": [{message, path, code}], "cached", "logs": [...]}.
import { format } from 'node:util';
import { ApolloClient, HttpLink, InMemoryCache, gql, setLogVerbosity } from '@apollo/client/core/index.js';
import { loadDevMessages, loadErrorMessages } from '@apollo/client/dev/index.js';

const [url, sku] = process.argv.slice(2);
if (!url || !sku) {
  console.error('usage: node partial.mjs http://127.0.0.1:8080/graphql SKU-000009');
  process.exit(2);
}
const logs = [];
for (const level of ['debug', 'log', 'info', 'warn', 'error']) {
  console[level] = (...args) => logs.push(`${level}: ${format(...args)}`);
}
// Everything Apollo can say, in words (its messages are not bundled by
// default), so a missing-field warning cannot hide.
setLogVerbosity('debug');
loadDevMessages();
loadErrorMessages();

const query = gql`
  query Page($sku: String!) {
    product(sku: $sku) {
      id
      sku
      name
      price { price { amount currencyCode } }
      availability { status }
    }
  }
`;
const client = new ApolloClient({ cache: new InMemoryCache(), link: new HttpLink({ uri: url }) });
const variables = { sku };
const result = await client.query({ query, variables, errorPolicy: 'all' });
const cached = client.cache.readQuery({ query, variables });
process.stdout.write(`${JSON.stringify({
  data: result.data ?? null,
  errors: (result.errors ?? []).map((e) => ({
    message: e.message,
    path: e.path,
    code: e.extensions?.code,
  })),
  cached,
  logs,
})}\n`);
