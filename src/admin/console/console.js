// Moat's SRE console: the admin API, read every few seconds and shown as
// tables that also fit a phone. The admin token is kept in this tab's
// session storage only and sent as a bearer header, never in a URL.
'use strict';

const TOKEN = 'moat-admin-token';
const REFRESH_MS = 5000;
const $ = (selector) => document.querySelector(selector);
/** The previous /metrics sample and when it was read, for rates over the refresh interval. */
let previous = null;
let previousAt = 0;
/** The system whose limit is being edited (refreshes leave its row alone). */
let editing = null;
/** The signed-in token, {name, role}, from /admin/whoami: only an operator sees the controls. */
let me = null;
const mayChange = () => me?.role === 'operator';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith('data-')) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ''));
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: {
      authorization: `Bearer ${sessionStorage.getItem(TOKEN) ?? ''}`,
      'content-type': 'application/json',
      'x-moat-actor': 'console',
    },
  });
  const body = await response.json().catch(() => null);
  // A viewer's change is refused, and the viewer stays signed in.
  if (response.status === 401 || (response.status === 403 && body?.code !== 'FORBIDDEN_FOR_ROLE')) {
    signOut(body?.error ?? 'not signed in');
    throw new Error('signed out');
  }
  if (!response.ok) {
    const error = new Error(body?.error ?? response.statusText);
    error.code = body?.code;
    throw error;
  }
  return body;
}

/** The API's answer, or null and why (a part that may be missing, such as the DLQ without Redis). */
async function optional(path) {
  try {
    return { body: await api(path) };
  } catch (e) {
    if (e.message === 'signed out') throw e;
    return { body: null, why: e.message };
  }
}

/** Prometheus text as [{name, labels, value}]. */
async function metrics() {
  const text = await (await fetch('/metrics')).text();
  const samples = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+)$/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** Sum of `name` samples grouped by `key(labels)`, minus the previous sample's. */
function sums(samples, name, key, since) {
  const total = new Map();
  const add = (list, sign) => {
    for (const s of list ?? []) {
      if (s.name !== name) continue;
      const k = key(s.labels);
      if (k !== null) total.set(k, (total.get(k) ?? 0) + sign * s.value);
    }
  };
  add(samples, 1);
  add(since, -1);
  return total;
}

const percent = (part, whole) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : '–');
const perSecond = (n, seconds) => (seconds > 0 ? `${(n / seconds).toFixed(1)}/s` : '–');
/** An RFC 3339 time (or Unix seconds) as local time; what does not parse is shown as it came. */
function when(value) {
  if (value == null || value === '') return '–';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}
/** An exception's held or ownerSays object in a few words: money as 12.34 EUR, else key=value. */
function brief(v) {
  if (v == null) return '–';
  if (typeof v !== 'object') return String(v);
  if (v.amount != null && v.currencyCode) return `${v.amount} ${v.currencyCode}`;
  for (const k of ['violation', 'value', 'quantity', 'available', 'currencyCode']) if (v[k] != null) return String(v[k]);
  if (v.found === false) return 'none';
  if (v.version != null) return `version ${v.version}`;
  return Object.entries(v).filter(([k, x]) => x != null && !k.endsWith('At') && k !== 'version')
    .map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : x}`).join(' ');
}
/** A dead letter's record: price SKU-1 (vip, EUR). */
function record(r) {
  if (!r) return '–';
  const detail = [r.segment, r.currency].filter(Boolean);
  return `${r.kind} ${r.id}${detail.length ? ` (${detail.join(', ')})` : ''}`;
}
/** A table cell labelled for the phone layout, where each row is a card. */
const cell = (label, ...children) => el('td', { 'data-label': label }, ...children);
const bytes = (n) => (n > 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`);
const ms = (v) => (v == null ? '–' : `${v.toFixed(1)} ms`);

function say(text, isError = false) {
  const message = $('#message');
  message.textContent = text;
  message.className = isError ? 'error' : '';
}

function systemRow(name, s, errors) {
  const b = s.breaker;
  const forced = b.forced ? ` (held ${b.forced})` : '';
  // Why it tripped, only while it is open or probing: a closed breaker's
  // old reason would read as a current problem.
  const reason = b.trip_reason && b.state !== 'closed' ? el('small', { className: 'reason' }, b.trip_reason) : '';
  const limit = s.limit;
  const limitCell = el('td', { 'data-label': 'Limit', className: 'limit' });
  if (editing === name && mayChange()) {
    const form = el('form', { className: 'limit-form' },
      el('label', {}, 'rps ', el('input', { name: 'rps', type: 'number', min: 1, value: limit.rps })),
      el('label', {}, 'burst ', el('input', { name: 'burst', type: 'number', min: 1, value: limit.burst })),
      el('label', {}, 'checkout reserve ', el('input', { name: 'checkout_reserve', type: 'number', min: 0, max: 0.9, step: 0.05, value: limit.checkout_reserve })),
      el('button', { type: 'submit', className: 'save' }, 'Save'),
      el('button', { type: 'button', className: 'cancel', onclick: () => { editing = null; refresh(); } }, 'Cancel'));
    form.onsubmit = (e) => { e.preventDefault(); saveLimit(name, form); };
    limitCell.append(form);
  } else {
    limitCell.append(
      el('span', { className: 'rps' }, `${limit.rps} rps`),
      el('small', {}, `burst ${limit.burst}, ${Math.round(limit.checkout_reserve * 100)} % for checkout`));
    if (mayChange()) {
      limitCell.append(el('button', { type: 'button', 'data-edit': name, onclick: () => { editing = name; refresh(); } }, 'Edit'));
    }
  }
  const breakerButton = (label, action) =>
    el('button', { type: 'button', 'data-breaker': action, onclick: () => forceBreaker(name, action) }, label);
  return el('tr', { 'data-system': name },
    el('td', { 'data-label': 'System' }, el('strong', {}, name), el('small', {}, (s.records ?? []).join(', '))),
    el('td', { 'data-label': 'Owner' }, s.owner ?? '–', el('small', {}, s.contact ?? '')),
    el('td', { 'data-label': 'Breaker' }, el('span', { className: `breaker state-${b.state}` }, b.state + forced), reason),
    limitCell,
    el('td', { 'data-label': 'Latency' }, `p50 ${ms(s.latency_ms.p50)}`, el('small', {}, `p99 ${ms(s.latency_ms.p99)}`)),
    el('td', { 'data-label': 'Errors' }, errors),
    mayChange()
      ? el('td', { 'data-label': 'Hold or reset the breaker', className: 'actions' },
        breakerButton('Hold open', 'open'), breakerButton('Hold closed', 'close'), breakerButton('Reset', 'reset'))
      : '');
}

async function saveLimit(name, form) {
  const change = {
    rps: Number(form.rps.value),
    burst: Number(form.burst.value),
    checkout_reserve: Number(form.checkout_reserve.value),
  };
  const question = `Set ${name} to ${change.rps} rps (burst ${change.burst}, ` +
    `${Math.round(change.checkout_reserve * 100)} % for checkout) on every replica?`;
  if (!confirm(question)) return;
  try {
    const answer = await api(`/admin/limits/${encodeURIComponent(name)}`, { method: 'PUT', body: JSON.stringify(change) });
    editing = null;
    say(`${name}: ${answer.rps} rps, ${answer.fleet ? 'on every replica' : 'on this replica only (no shared Redis)'}.`);
  } catch (e) {
    say(`${name}: ${e.message}`, true);
  }
  refresh();
}

async function forceBreaker(name, action) {
  const what = { open: 'hold the breaker of NAME open (calls fail at once)', close: 'hold the breaker of NAME closed', reset: 'hand the breaker of NAME back to its thresholds' }[action];
  if (!confirm(`${what.replace('NAME', name)}, on every replica?`)) return;
  try {
    const answer = await api(`/admin/breakers/${encodeURIComponent(name)}`, { method: 'POST', body: JSON.stringify({ action }) });
    say(`${name}: breaker ${answer.state}${answer.fleet ? ', on every replica' : ', on this replica only'}.`);
  } catch (e) {
    say(`${name}: ${e.message}`, true);
  }
  refresh();
}

async function dlqAction(id, action) {
  const question = action === 'replay'
    ? `Replay dead letter ${id} (apply its event again)?`
    : `Discard dead letter ${id} (its change is lost until reconciliation finds it)?`;
  if (!confirm(question)) return;
  try {
    if (action === 'replay') {
      const answer = await api('/admin/dlq/replay', { method: 'POST', body: JSON.stringify({ ids: [id] }) });
      const failed = answer.failed?.[0];
      say(failed ? `${id}: still parked: ${failed.reason}` : `${id}: replayed.`, Boolean(failed));
    } else {
      await api(`/admin/dlq/${encodeURIComponent(id)}`, { method: 'DELETE' });
      say(`${id}: discarded.`);
    }
  } catch (e) {
    say(`${id}: ${e.message}`, true);
  }
  refresh();
}

function renderDlq(dlq) {
  const state = $('#dlq-state');
  if (!dlq.body) {
    state.textContent = dlq.why;
    $('#dlq tbody').replaceChildren();
    return;
  }
  const items = dlq.body.items ?? [];
  state.textContent = `${dlq.body.depth} waiting`;
  $('#dlq thead th.actions').hidden = !mayChange();
  $('#dlq tbody').replaceChildren(...items.map((d) => el('tr', { 'data-id': d.id },
    cell('Parked', when(d.parkedAt)), cell('Source', d.source), cell('Event', d.type, el('small', {}, d.eventId)),
    cell('Record', el('span', { className: 'record' }, record(d.record))), cell('Tries', String(d.attempts)),
    cell('Reason', d.reason),
    mayChange()
      ? el('td', { 'data-label': 'Replay or discard', className: 'actions' },
        el('button', { type: 'button', 'data-replay': d.id, onclick: () => dlqAction(d.id, 'replay') }, 'Replay'),
        el('button', { type: 'button', 'data-discard': d.id, onclick: () => dlqAction(d.id, 'discard') }, 'Discard'))
      : '')));
}

function renderExceptions(listed) {
  const rows = (listed?.exceptions ?? []).slice(0, 20);
  $('#exceptions tbody').replaceChildren(...rows.map((x) => el('tr', { 'data-key': x.key },
    cell('Found', when(x.at)), cell('System', x.system), cell('Entity', x.entity), cell('Kind', x.kind || '–'),
    cell('Found by', x.foundBy), cell('Key', x.key),
    cell('Held', el('span', { className: 'held' }, brief(x.held))),
    cell('Owner says', el('span', { className: 'owner-says' }, brief(x.ownerSays))))));
}

function render(status, audits, samples) {
  $('#replica').textContent = `replica ${status.replica ?? ''}`;
  $('#whoami').textContent = me ? `${me.name} (${me.role})` : '';
  $('#systems thead th.actions').hidden = !mayChange();
  $('#updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  const since = previous;
  const now = Date.now();
  const seconds = since ? (now - previousAt) / 1000 : 0;
  const requests = sums(samples, 'moat_graphql_requests_total', (l) => l.outcome, since);
  const answered = (requests.get('ok') ?? 0) + (requests.get('error') ?? 0);
  $('#request-rate').textContent = perSecond(answered, seconds);
  $('#error-rate').textContent = since
    ? `${perSecond(requests.get('error') ?? 0, seconds)} (${percent(requests.get('error') ?? 0, answered)})`
    : '–';
  const events = sums(samples, 'moat_events_total', (l) => l.outcome, since);
  const eventsEver = sums(samples, 'moat_events_total', (l) => l.outcome, null);
  $('#events tbody').replaceChildren(...[...eventsEver.keys()].sort().map((outcome) => el('tr', { 'data-outcome': outcome },
    cell('Outcome', outcome), cell('Per second', el('span', { className: 'rate' }, since ? perSecond(events.get(outcome) ?? 0, seconds) : '–')),
    cell('Since start', String(eventsEver.get(outcome))))));
  const calls = sums(samples, 'moat_upstream_requests_total', (l) => l.upstream, since);
  const failed = sums(samples, 'moat_upstream_requests_total',
    (l) => (['error', 'rejected', 'breaker_open', 'rate_limited', 'unauthorized'].includes(l.outcome) ? l.upstream : null), since);
  const systems = $('#systems tbody');
  systems.replaceChildren(...Object.entries(status.upstreams).map(([name, s]) =>
    systemRow(name, s, percent(failed.get(name) ?? 0, calls.get(name) ?? 0))));

  const lookups = sums(samples, 'moat_cache_requests_total', (l) => `${l.entity}/${l.tier}`, since);
  const hits = sums(samples, 'moat_cache_requests_total', (l) => (l.result === 'hit' ? `${l.entity}/${l.tier}` : null), since);
  const ratio = (entity, tier) => percent(hits.get(`${entity}/${tier}`) ?? 0, lookups.get(`${entity}/${tier}`) ?? 0);
  $('#cache tbody').replaceChildren(...Object.entries(status.cache.l1).map(([entity, l1]) =>
    el('tr', { 'data-entity': entity },
      cell('Entity', entity), cell('L1 hit', ratio(entity, 'l1')), cell('L2 hit', ratio(entity, 'l2')),
      cell('L1 entries', String(l1.entries)),
      el('td', { 'data-label': 'L1 size of budget', className: 'size' }, `${bytes(l1.bytes)} of ${bytes(l1.max_bytes)}`))));

  const redis = !status.redis.configured
    ? 'not configured: each replica caches and limits alone'
    : status.redis.breaker.state === 'closed' ? 'reachable' : `unreachable (breaker ${status.redis.breaker.state})`;
  const last = status.reconciliation.last;
  const platform = [
    ['Redis', redis],
    ['Dead letters', status.dlq.depth == null ? 'no queue (no Redis)' : String(status.dlq.depth)],
    ['Last reconciliation', last ? `${last.entity}: ${last.checked} checked, ${last.drifted} drifted, ${when(last.finishedAt ?? last.startedAt)}` : 'none yet'],
    ['Unpublished invalidations', String(status.cache.unpublished_invalidations ?? 0)],
    ...(status.edge?.purge ?? []).map((t) => [`Edge purges: ${t.target}`,
      `${t.sent} sent, ${t.failed} failed, ${t.backlog} waiting` + (t.lastError ? `; last error: ${t.lastError}` : '')]),
  ];
  $('#platform').replaceChildren(...platform.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));

  $('#audit tbody').replaceChildren(...audits.slice(0, 30).map((a) =>
    el('tr', { 'data-action': a.action },
      cell('When', when(a.at)),
      cell('Who', a.who, a.via ? el('small', {}, a.via) : ''), cell('Action', el('span', { className: 'action' }, a.action)),
      cell('Target', a.target), cell('Replica', a.replica), cell('New', el('code', {}, JSON.stringify(a.new))))));
  previous = samples;
  previousAt = now;
}

async function refresh() {
  if (!sessionStorage.getItem(TOKEN)) return;
  try {
    const [whoami, status, audits, samples, exceptions, dlq] = await Promise.all([
      api('/admin/whoami'), api('/admin/status'), api('/admin/audit'), metrics(),
      api('/admin/exceptions?limit=20'), optional('/admin/dlq?limit=50')]);
    me = whoami;
    render(status, audits, samples);
    renderExceptions(exceptions);
    renderDlq(dlq);
  } catch (e) {
    if (e.message !== 'signed out') say(`Cannot read the admin API: ${e.message}`, true);
  }
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN);
  me = null;
  editing = null;
  $('#console').hidden = true;
  $('#sign-out').hidden = true;
  $('#sign-in-form').hidden = false;
  $('#sign-in-error').textContent = reason ?? '';
}

async function signIn(event) {
  event?.preventDefault();
  const token = $('#token').value.trim();
  if (token) sessionStorage.setItem(TOKEN, token);
  $('#token').value = '';
  $('#sign-in-form').hidden = true;
  $('#console').hidden = false;
  $('#sign-out').hidden = false;
  await refresh();
}

$('#sign-in-form').addEventListener('submit', signIn);
$('#sign-out').addEventListener('click', () => signOut());
if (sessionStorage.getItem(TOKEN)) signIn(); else signOut();
setInterval(refresh, REFRESH_MS);
