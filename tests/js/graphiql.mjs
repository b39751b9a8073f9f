// Loads Moat's GraphiQL page in headless Chromium with every request off
// loopback refused, runs a query through the page's own Run button, and
// opens the docs explorer. Prints one JSON line:
// {"result", "docs", "offsite": [urls], "errors": [console errors]}.
import puppeteer from 'puppeteer-core';

const [url, query] = process.argv.slice(2);
if (!url || !query) {
  console.error('usage: node graphiql.mjs http://127.0.0.1:8080/graphql QUERY');
  process.exit(2);
}
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const offsite = [];
const errors = [];
try {
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    const target = new URL(request.url());
    if (target.protocol === 'data:' || target.hostname === '127.0.0.1') {
      request.continue();
    } else {
      offsite.push(request.url());
      request.abort();
    }
  });
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${url}?query=${encodeURIComponent(query)}`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('.graphiql-execute-button', { timeout: 15000 });
  await page.click('.graphiql-execute-button');
  await page.waitForFunction(
    () => document.querySelector('.result-window')?.innerText.includes('"data"'),
    { timeout: 15000 },
  );
  const result = await page.$eval('.result-window', (e) => e.innerText);
  await page.click('[aria-label="Show Documentation Explorer"]');
  await page.waitForFunction(
    () => document.querySelector('.graphiql-doc-explorer')?.innerText.includes('Query'),
    { timeout: 15000 },
  );
  const docs = await page.$eval('.graphiql-doc-explorer', (e) => e.innerText);
  console.log(JSON.stringify({ result, docs, offsite, errors }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), offsite, errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
