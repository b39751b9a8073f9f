// graphql-request sending a variable used only in a directive on
// `__typename` (the shape of its own smoke query): the variable counts as
// used, and the directive decides. Prints one JSON line: {"on", "off"}.
import { GraphQLClient, gql } from 'graphql-request';

const url = process.argv[2];
if (!url) {
  console.error('usage: node typename.mjs http://127.0.0.1:8080/graphql');
  process.exit(2);
}
const client = new GraphQLClient(url);
const query = gql`
  query Q($on: Boolean!) {
    __typename @include(if: $on)
  }
`;
const on = await client.request(query, { on: true });
const off = await client.request(query, { on: false });
console.log(JSON.stringify({ on, off }));
