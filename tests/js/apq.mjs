// Apollo Client with its automatic-persisted-queries link, as a storefront
// would run it (hashed queries over GET), against Moat. Two clients with
// empty caches run the same query: the first finds the hash unknown and
// registers it, the second is served by hash alone. Prints one JSON line:
// {"requests": [{method, query, hash}], "names": [...], "errors": [...]}.
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';

const url = process.argv[2];
if (!url) {
  console.error('usage: node apq.mjs http://127.0.0.1:8080/graphql');
  process.exit(2);
}
const requests = [];
// What went over the wire: method, whether the text was sent, whether a hash was.
const spy = async (input, init = {}) => {
  const target = new URL(typeof input === 'string' ? input : input.url);
  const method = init.method ?? 'GET';
  const body = init.body ? JSON.parse(init.body) : null;
  const ext = body?.extensions ?? JSON.parse(target.searchParams.get('extensions') ?? 'null');
  requests.push({
    method,
    query: Boolean(body?.query ?? target.searchParams.get('query')),
    hash: Boolean(ext?.persistedQuery?.sha256Hash),
  });
  return fetch(input, init);
};
const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const query = gql`
  query Names($first: Int!) {
    products(first: $first) { edges { node { sku name } } }
  }
`;
const client = () => new ApolloClient({
  cache: new InMemoryCache(),
  link: createPersistedQueryLink({ sha256, useGETForHashedQueries: true })
    .concat(new HttpLink({ uri: url, fetch: spy })),
});
const names = [];
const errors = [];
for (const c of [client(), client()]) {
  try {
    const { data } = await c.query({ query, variables: { first: 2 } });
    names.push(data.products.edges.map((e) => e.node.name));
  } catch (e) {
    errors.push(String(e));
  }
}
console.log(JSON.stringify({ requests, names, errors }));
