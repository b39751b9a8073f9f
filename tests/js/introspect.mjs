// Sends graphql-js's full introspection query through graphql-request (as a
// storefront client or a code generator would) and builds a client schema
// from the answer. Prints one JSON line: {"types", "queryFields", "mutationFields"}.
import { GraphQLClient } from 'graphql-request';
import { buildClientSchema, getIntrospectionQuery } from 'graphql';

const url = process.argv[2];
if (!url) {
  console.error('usage: node introspect.mjs http://127.0.0.1:8080/graphql');
  process.exit(2);
}
const client = new GraphQLClient(url);
const query = getIntrospectionQuery({
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
});
const data = await client.request(query);
const schema = buildClientSchema(data);
console.log(JSON.stringify({
  types: Object.keys(schema.getTypeMap()).length,
  queryFields: Object.keys(schema.getQueryType().getFields()),
  mutationFields: Object.keys(schema.getMutationType()?.getFields() ?? {}),
}));
