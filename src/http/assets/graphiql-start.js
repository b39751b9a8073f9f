// Starts GraphiQL against the endpoint that served this page. A file of its
// own, not an inline script, so the page runs under `script-src 'self'`.
const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
const defaultQuery = `# Moat: products, prices and stock from the cache, with freshness.
{
  products(first: 5) {
    nodes {
      sku
      name
      price { price { amount currencyCode } freshness { ageSeconds stale } }
      availability { status quantity }
    }
  }
}
`;
// `?query=` opens a shared link's query.
const query = new URLSearchParams(window.location.search).get('query') ?? undefined;
ReactDOM.createRoot(document.getElementById('graphiql'))
  .render(React.createElement(GraphiQL, { fetcher, defaultQuery, query }));
