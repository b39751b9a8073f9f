// Drives Moat's SRE console in headless Chromium, every request off
// loopback refused: a wrong token is refused, the right one signs in, each
// system's breaker state is read, and SYSTEM's limit is set to RPS through
// the inline editor (its confirmation accepted). Screenshots at desktop and
// phone width go to DIR. With VIEWER_TOKEN, it then signs in again as that
// viewer and reads what the page offers it. On the way it reads the newest
// exception, the dead letter waiting (and replays it), the storefront's
// request rate (the caller keeps traffic flowing), events by outcome,
// whether the ERP's old trip reason shows on a closed breaker, the audit's
// actions, and whether anything at 390 px is wider than the screen.
// Prints one JSON line: {"refused", "breakers": {system: state}, "cache",
// "message", "exceptions", "letter", "replayed", "rates", "events",
// "erpReason", "actions", "invalidDates", "phone", "viewer", "offsite",
// "errors"}.
import puppeteer from 'puppeteer-core';

const [url, token, system, rps, dir, viewerToken] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node console.mjs http://127.0.0.1:9090/admin/ TOKEN SYSTEM RPS DIR [VIEWER_TOKEN]');
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
  await page.setViewport({ width: 1280, height: 900 });
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    const target = new URL(request.url());
    if (target.protocol === 'data:' || target.hostname === '127.0.0.1') request.continue();
    else { offsite.push(request.url()); request.abort(); }
  });
  page.on('console', (m) => m.type() === 'error' && !m.text().includes('401') && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (dialog) => dialog.accept());

  await page.goto(url, { waitUntil: 'networkidle0' });
  await page.type('#token', 'not-the-token');
  await page.click('#sign-in');
  await page.waitForFunction(() => document.querySelector('#sign-in-error')?.textContent.length > 0);
  const refused = await page.$eval('#sign-in-error', (e) => e.textContent);

  await page.type('#token', token);
  await page.click('#sign-in');
  await page.waitForSelector(`#systems tr[data-system="${system}"]`);
  const breakers = await page.$$eval('#systems tr[data-system]', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.system, r.querySelector('.breaker').textContent])));
  await page.waitForSelector('#cache tr[data-entity="product"]');
  const cache = await page.$$eval('#cache tr[data-entity]', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.entity, r.querySelector('.size').textContent])));

  // The newest exception, in the storefront's terms.
  await page.waitForSelector('#exceptions tr[data-key]', { timeout: 30000 });
  const exceptions = await page.$$eval('#exceptions tr[data-key]', (rows) => rows.map((r) => ({
    key: r.dataset.key,
    kind: r.querySelector('[data-label="Kind"]').textContent,
    held: r.querySelector('.held').textContent,
    ownerSays: r.querySelector('.owner-says').textContent,
  })));
  // A dead letter, naming its record.
  await page.waitForSelector('#dlq tr[data-id]', { timeout: 30000 });
  const letter = await page.$eval('#dlq tr[data-id]', (r) => ({ id: r.dataset.id, record: r.querySelector('.record').textContent }));
  // Rates need two samples with traffic between them.
  await page.waitForFunction(() => parseFloat(document.querySelector('#request-rate')?.textContent) > 0, { timeout: 30000 });
  const rates = await page.evaluate(() => ({
    requests: document.querySelector('#request-rate').textContent,
    errors: document.querySelector('#error-rate').textContent,
  }));
  const events = await page.$$eval('#events tr[data-outcome]', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.outcome, r.querySelector('.rate').textContent])));
  const erpReason = await page.$eval('#systems tr[data-system="erp"]', (r) => r.querySelector('.reason')?.textContent ?? null);
  await page.screenshot({ path: `${dir}/console-desktop.png`, fullPage: true });

  await page.click(`[data-replay="${letter.id}"]`);
  await page.waitForFunction((id) => document.querySelector('#message')?.textContent.startsWith(`${id}:`), {}, letter.id);
  const replayed = await page.$eval('#message', (e) => e.textContent);
  await page.waitForFunction((id) => !document.querySelector(`#dlq tr[data-id="${id}"]`), {}, letter.id);

  await page.click(`[data-edit="${system}"]`);
  await page.waitForSelector(`#systems tr[data-system="${system}"] input[name="rps"]`);
  const input = `#systems tr[data-system="${system}"] input[name="rps"]`;
  await page.$eval(input, (e) => { e.value = ''; });
  await page.type(input, rps);
  await page.click(`#systems tr[data-system="${system}"] .save`);
  await page.waitForFunction((s) => document.querySelector('#message')?.textContent.startsWith(`${s}:`), {}, system);
  const message = await page.$eval('#message', (e) => e.textContent);
  await page.waitForFunction((s, r) =>
    document.querySelector(`#systems tr[data-system="${s}"] .rps`)?.textContent === `${r} rps`, {}, system, rps);

  await page.waitForSelector('#audit tr[data-action="dlq.replay"]');
  const actions = await page.$$eval('#audit tr[data-action]', (rows) => rows.map((r) => r.querySelector('.action').textContent));
  const invalidDates = await page.evaluate(() => document.body.innerText.includes('Invalid Date'));

  await page.setViewport({ width: 390, height: 844, isMobile: true });
  await page.waitForFunction(() => window.innerWidth === 390);
  const phone = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const wider = [...document.querySelectorAll('#console *, header *')]
      .filter((e) => e.getClientRects().length > 0 && e.getBoundingClientRect().right > width + 1)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}.${e.className}`);
    return { width, scrollWidth: document.documentElement.scrollWidth, wider: wider.slice(0, 10) };
  });
  await page.screenshot({ path: `${dir}/console-phone.png`, fullPage: true });

  // A viewer: the same tables, none of the controls.
  let viewer = null;
  if (viewerToken) {
    await page.setViewport({ width: 1280, height: 900 });
    await page.click('#sign-out');
    await page.waitForSelector('#sign-in-form:not([hidden])');
    await page.type('#token', viewerToken);
    await page.click('#sign-in');
    await page.waitForFunction(() => document.querySelector('#whoami')?.textContent.includes('viewer'));
    await page.waitForSelector(`#systems tr[data-system="${system}"] .rps`);
    viewer = await page.evaluate((s) => ({
      whoami: document.querySelector('#whoami').textContent,
      systems: document.querySelectorAll('#systems tr[data-system]').length,
      rps: document.querySelector(`#systems tr[data-system="${s}"] .rps`).textContent,
      controls: document.querySelectorAll('#console button, #console form, #console input').length,
      signedIn: !document.querySelector('#console').hidden,
    }), system);
    await page.screenshot({ path: `${dir}/console-viewer.png`, fullPage: true });
  }
  console.log(JSON.stringify({
    refused, breakers, cache, message, exceptions, letter, replayed, rates, events, erpReason, actions,
    invalidDates, phone, viewer, offsite, errors,
  }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), offsite, errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
