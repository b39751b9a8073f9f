// Runs the graphql-http package's GraphQL-over-HTTP server audits against a
// Moat /graphql URL. Prints one JSON line: {"total", "failed": [{id, name, status, reason}]}.
// Exit 0 only when every audit passed (warnings count as failures).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs http://127.0.0.1:8080/graphql');
  process.exit(2);
}
const audits = serverAudits({ url });
const failed = [];
for (const audit of audits) {
  const result = await audit.fn();
  if (result.status !== 'ok') {
    failed.push({ id: result.id, name: result.name, status: result.status, reason: result.reason });
  }
}
console.log(JSON.stringify({ total: audits.length, failed }));
process.exit(failed.length === 0 ? 0 : 1);
