// Drives Moat's SRE console in headless Chromium, every request off
// loopback refused: a wrong token is refused, the right one signs in, each
// system's breaker state is read, and SYSTEM's limit is set to RPS through
// the inline editor (its confirmation accepted). Screenshots at desktop and
// phone width go to DIR. With VIEWER_TOKEN, it then signs in again as that
// viewer and reads what the page offers it. Prints one JSON line:
// {"refused", "breakers": {system: state}, "message", "viewer", "offsite", "errors"}.
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
  await page.screenshot({ path: `${dir}/console-desktop.png`, fullPage: true });

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

  await page.setViewport({ width: 390, height: 844, isMobile: true });
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
  console.log(JSON.stringify({ refused, breakers, cache, message, viewer, offsite, errors }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), offsite, errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
