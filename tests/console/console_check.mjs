#!/usr/bin/env node
// End-to-end check of the browser console (GraphiQL at GET /graphql) in Debian's
// headless Chromium, driven by playwright-core from web/node_modules:
//
//   node tests/console/console_check.mjs <base-url> [token]
//
// What it checks is listed in web/README.md ("The browser test"): the token bar with
// a wrong and a right token, GraphiQL's run button, the catalog and its examples, the
// sessions panel kept live by sessionUpdated (a viewer's forged mutation refused; an
// operator's form session counting the caller's 20 runs exactly and stopping within 1 s),
// charts (operations, histogram, exports, live events in batches, a flame graph whose hot
// function holds most samples), rules, the live alert feed, seccomp profiles, a real
// container traced from its panel, health, shared links, and that the page asks no host
// but the server for anything (the console must work with no internet access).
// Prints `console ok: version <v>` and exits 0 on success; exits 1 with a reason
// otherwise (2 for bad usage or a missing browser / playwright-core).
// Environment: CHROMIUM (default /usr/bin/chromium), CONSOLE_CHECK_TIMEOUT_MS
// (default 60000), CONSOLE_CHECK_SCREENSHOT (a PNG path: screenshot on success),
// CONSOLE_CHECK_SHOTS (a directory: a screenshot of each page), and the caller's
// fixtures CONSOLE_CHECK_PROFILES, CONSOLE_CHECK_PROGRAM, CONSOLE_CHECK_HOT and
// CONSOLE_CHECK_CONTAINER.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const QUERY = '{ health { version } }';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.CONSOLE_CHECK_TIMEOUT_MS || 60000);
const STEP_MS = 20000;

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '../../web');

function usage(message) {
  console.error(`console check: ${message}`);
  console.error('usage: node tests/console/console_check.mjs <base-url> [token]');
  process.exit(2);
}

const [baseArg, token = ''] = process.argv.slice(2);
if (!baseArg) usage('missing <base-url> (for example http://127.0.0.1:8527)');
let base;
try {
  base = new URL(baseArg);
} catch {
  usage(`not a URL: ${baseArg}`);
}
if (base.protocol !== 'http:' && base.protocol !== 'https:') usage(`not an http(s) URL: ${baseArg}`);
const pageUrl = `${base.origin}${base.pathname.replace(/\/+$/, '')}/graphql`;
const allowedHost = base.host; // host:port

let chromium;
try {
  const require = createRequire(path.join(webDir, 'package.json'));
  ({ chromium } = require('playwright-core'));
} catch (err) {
  usage(`cannot load playwright-core from ${webDir}/node_modules (run \`npm ci\` in web/): ${err.message}`);
}
if (!fs.existsSync(CHROMIUM)) usage(`no browser at ${CHROMIUM} (apt-get install -y chromium)`);

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'eunomia-console-check-'));
let context;

async function cleanUp() {
  try {
    if (context) await context.close();
  } catch {
    // The browser may already be gone.
  }
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(message, details = []) {
  console.error(`console check FAILED: ${message}`);
  for (const line of details) console.error(`  ${line}`);
  await cleanUp();
  process.exit(1);
}

const watchdog = setTimeout(() => {
  fail(`gave up after ${TIMEOUT_MS} ms`, diagnostics());
}, TIMEOUT_MS);

// Everything the page asked for, and what it said on its console.
const requests = [];
const foreign = [];
const pageErrors = [];
const consoleErrors = [];

function note(url) {
  requests.push(url);
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    foreign.push(url);
    return;
  }
  // data:, blob: and about: URLs never leave the browser.
  if (['data:', 'blob:', 'about:'].includes(parsed.protocol)) return;
  if (parsed.host !== allowedHost) foreign.push(url);
}

function diagnostics() {
  return [
    ...pageErrors.map((e) => `page error: ${e}`),
    ...consoleErrors.map((e) => `console error: ${e}`),
    `requests made: ${requests.length ? '' : 'none'}`,
    ...requests.map((u) => `  ${u.length > 160 ? `${u.slice(0, 160)}...` : u}`),
  ];
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
  });
} catch (err) {
  await fail(`cannot start ${CHROMIUM}: ${err.message.split('\n')[0]}`);
}
context.setDefaultTimeout(STEP_MS);
context.on('request', (request) => note(request.url()));

const page = context.pages()[0] ?? (await context.newPage());

// With CONSOLE_CHECK_SHOTS (a directory): a screenshot of each page, named
// <page>-<role>.png, as the check's artefacts.
const SHOTS = process.env.CONSOLE_CHECK_SHOTS;
let shotRole = 'anonymous';
async function shot(name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}-${shotRole}.png`) });
}

// One GraphQL operation from inside the page (same origin, as a script on it could),
// with `token` when there is one; the parsed answer.
function ask(query, variables = {}, operationName = undefined) {
  return page.evaluate(
    async ({ query, variables, operationName, token }) => {
      const response = await fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables, operationName }),
      });
      return response.json();
    },
    { query, variables, operationName, token },
  );
}
page.on('websocket', (ws) => note(ws.url()));
page.on('pageerror', (err) => pageErrors.push(err.message));
page.on('console', (msg) => {
  if (msg.type() === 'error') consoleErrors.push(msg.text());
});

try {
  const response = await page.goto(pageUrl, { waitUntil: 'load' });
  if (!response) await fail(`no response for ${pageUrl}`);
  if (!response.ok()) await fail(`GET ${pageUrl} answered HTTP ${response.status()}`);
  const title = await page.title();
  if (title !== 'Eunomia console') await fail(`page title is ${JSON.stringify(title)}, expected "Eunomia console"`);

  await page
    .waitForSelector('.graphiql-query-editor .CodeMirror', { state: 'attached' })
    .catch(() => fail('GraphiQL did not render a query editor', diagnostics()));

  if (token) {
    // A wrong token says so in the bar, with the server's reason.
    await page.fill('#eunomia-token-input', 'not-a-token');
    await page.click('#eunomia-token-apply');
    const refused = await page
      .waitForSelector('#eunomia-token-check.refused', { timeout: STEP_MS })
      .then((el) => el.textContent())
      .catch(() => fail('a wrong token is not reported in the bar', diagnostics()));
    if (!refused.includes('UNAUTHENTICATED')) await fail(`a wrong token reads ${JSON.stringify(refused)}`);
    await page.fill('#eunomia-token-input', token);
    await page.click('#eunomia-token-apply');
    await page
      .waitForFunction(() => document.querySelector('#eunomia-token-status')?.textContent === 'token set')
      .catch(() => fail('the token bar did not take the token'));
    const stored = await page.evaluate(() => localStorage.getItem('eunomia.token'));
    if (stored !== token) await fail('the token was not stored in localStorage under eunomia.token');
    const accepted = await page
      .waitForSelector('#eunomia-token-check.accepted', { timeout: STEP_MS })
      .then((el) => el.textContent())
      .catch(() => fail('the bar does not say whom the token names', diagnostics()));
    shotRole = accepted.includes('(operator)') ? 'operator' : 'viewer';
  }

  // Put the query into GraphiQL's (CodeMirror 5) query editor and check it took.
  const editorValue = await page.evaluate((query) => {
    const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    cm.setValue(query);
    return cm.getValue();
  }, QUERY);
  if (editorValue !== QUERY) await fail(`the query editor holds ${JSON.stringify(editorValue)}`);
  // GraphiQL digests edits after a 100 ms debounce (parsing the operation, saving
  // it under graphiql:query); run only once it has, as a person typing would.
  await page
    .waitForFunction((query) => localStorage.getItem('graphiql:query') === query, QUERY)
    .catch(() => fail('GraphiQL did not take the new query'));

  // Clear the response pane so that only this run's answer can satisfy the wait.
  await page.evaluate(() => {
    const cm = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror;
    if (cm) cm.setValue('');
  });
  await page.click('.graphiql-execute-button');

  const responseText = await page
    .waitForFunction(
      () => {
        const cm = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror;
        const text = cm ? cm.getValue() : '';
        return text.includes('"version"') || text.includes('"errors"') ? text : false;
      },
      undefined,
      { timeout: STEP_MS },
    )
    .then((handle) => handle.jsonValue())
    .catch(async () => {
      const shown = await page
        .evaluate(() => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue() ?? '')
        .catch(() => '');
      return fail('no "version" appeared in the response pane', [`response pane: ${shown || '(empty)'}`, ...diagnostics()]);
    });

  let body;
  try {
    body = JSON.parse(responseText);
  } catch {
    await fail('the response pane does not hold JSON', [responseText]);
  }
  const version = body?.data?.health?.version;
  if (typeof version !== 'string' || version.trim() === '') {
    const authError = /UNAUTHENTICATED|token/i.test(responseText);
    const hint = authError ? (token ? ' (is the token right?)' : ' (does the server want a token?)') : '';
    await fail(`the response has no non-empty health.version${hint}`, [responseText]);
  }

  // The catalog panel lists each tracker's fields; a click writes one, quoted, at the
  // query editor's cursor (string values GraphiQL's own completion cannot know).
  await page.evaluate(() => {
    const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    cm.setValue('');
  });
  await page
    .click('[aria-label="Show Trackers and fields"]')
    .catch(() => fail('no catalog button in the sidebar', diagnostics()));
  await page
    .click('details[data-tracker="process"] > summary')
    .catch(() => fail('the catalog does not list the process tracker', diagnostics()));
  await page
    .click('details[data-tracker="process"] button[data-field="filename"]')
    .catch(() => fail('the catalog does not list process fields', diagnostics()));
  const inserted = await page.evaluate(
    () => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue(),
  );
  if (inserted !== '"filename"') await fail(`a click on filename wrote ${JSON.stringify(inserted)}`);

  // A tracker's example fills both editors; the server validates the operation it wrote.
  await page
    .click('details[data-tracker="process"] button[data-example="process"]')
    .catch(() => fail('the catalog has no example for the process tracker', diagnostics()));
  const example = await page.evaluate(() => ({
    query: document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue(),
    variables: document.querySelector('.graphiql-editor-tool .CodeMirror').CodeMirror.getValue(),
  }));
  if (!example.query.includes('mutation Start') || !example.query.includes('query Results')) {
    await fail(`the example holds ${JSON.stringify(example.query)}`);
  }
  if (JSON.parse(example.variables).tracker !== 'process') {
    await fail(`the example's variables are ${example.variables}`);
  }
  const checked = await ask(example.query, { id: 'none' }, 'Results');
  // An unknown session is a NOT_FOUND from the resolver: the document itself is valid.
  const codes = (checked.errors ?? []).map((e) => e.extensions?.code ?? e.message);
  if (codes.some((code) => code !== 'NOT_FOUND')) await fail(`the example does not run: ${JSON.stringify(checked)}`);
  await shot('catalog');

  // The sessions panel lists the session the test started, with counts; a viewer gets
  // no stop button; "open" puts the Results query for it into the editors.
  await page
    .click('[aria-label="Show Sessions"]')
    .catch(() => fail('no sessions button in the sidebar', diagnostics()));
  const row = await page
    .waitForSelector('tr[data-session][data-status="RUNNING"]', { timeout: STEP_MS })
    .catch(() => fail('the sessions panel lists no running session', diagnostics()));
  const rowText = await row.textContent();
  if (!rowText.includes('process') || !rowText.includes('events')) await fail(`a session row reads ${JSON.stringify(rowText)}`);
  const sessionId = await row.getAttribute('data-session');
  // Its counts move while the caller runs processes: pushed by sessionUpdated (the list
  // itself is read only every 30 s).
  const eventsBefore = Number(await row.getAttribute('data-events'));
  await page
    .waitForFunction(
      ({ id, before }) => Number(document.querySelector(`tr[data-session="${id}"]`)?.dataset.events) > before,
      { id: sessionId, before: eventsBefore },
      { timeout: 8000 },
    )
    .catch(() => fail(`the session's event count stayed at ${eventsBefore}: no live update`, diagnostics()));
  const role = (await ask('{ me { role } }')).data.me.role;
  const stopButton = await row.$('button[data-action="stop"]');
  if (role === 'VIEWER' && (stopButton || (await page.$('button[data-action="new"]')))) {
    await fail('a viewer is offered a stop or new-session button');
  }
  if (role === 'VIEWER') {
    // A mutation forged from the page with the viewer's token is refused.
    const forged = await ask('mutation($id: ID!) { stopSession(id: $id) { status } }', { id: sessionId });
    if (forged.errors?.[0]?.extensions?.code !== 'FORBIDDEN') await fail(`a viewer's forged stopSession got ${JSON.stringify(forged)}`);
  }
  const program = process.env.CONSOLE_CHECK_PROGRAM;
  if (role === 'OPERATOR') {
    if (!stopButton) await fail('an operator has no stop button');
    // The new-session form starts a process session on the caller's program, which the
    // caller then runs exactly 20 times: its counters and bars say 20, and it stops from
    // its row within a second.
    await page.click('button[data-action="new"]');
    await page.fill('.eunomia-new-session input[name="label"]', 'from-console');
    await page.fill('.eunomia-new-session input[name="durationSecs"]', '60');
    if (program) await page.fill('.eunomia-new-session input[name="comm"]', program);
    await page.click('.eunomia-new-session button[data-action="start"]');
    const made = await page
      .waitForSelector('tr[data-status="RUNNING"]:has-text("from-console")', { timeout: STEP_MS })
      .catch(async () => fail('the new-session form started nothing', [await page.textContent('.eunomia-sessions').catch(() => ''), ...diagnostics()]));
    const madeId = await made.getAttribute('data-session');
    if (program) {
      const chart = `[data-chart="${madeId}"]`;
      await page
        .waitForSelector(`${chart} .eunomia-kind[data-kind="exec"][data-count="20"]`, { timeout: STEP_MS })
        .catch(async () => fail('the exec counter did not reach 20', [await page.textContent(chart).catch(() => ''), ...diagnostics()]));
      await page
        .waitForSelector(`tr[data-session="${madeId}"][data-events="40"]`, { timeout: STEP_MS })
        .catch(async () => fail('the row did not count 20 execs and 20 exits', [await page.textContent(`tr[data-session="${madeId}"]`).catch(() => '')]));
      await page.click(`${chart} .eunomia-kind[data-kind="exec"]`);
      await page.selectOption(`${chart} select[name="groupBy"]`, 'comm');
      await page
        .waitForFunction(
          ({ chart, program }) => {
            const bars = [...document.querySelectorAll(`${chart} .eunomia-aggregate tr[data-key]`)];
            return bars.length === 1 && bars[0].dataset.key === program && bars[0].dataset.value === '20';
          },
          { chart, program },
          { timeout: STEP_MS },
        )
        .catch(async () => fail(`no single bar of 20 for ${program}`, [await page.textContent(chart).catch(() => ''), ...diagnostics()]));
    }
    await page.click(`tr[data-session="${madeId}"] button[data-action="stop"]`);
    await page
      .waitForSelector(`tr[data-session="${madeId}"][data-status="STOPPED"]`, { timeout: 1000 })
      .catch(() => fail('stop did not show STOPPED within 1 s', diagnostics()));
    const status = (await ask('query($id: ID!) { session(id: $id) { status } }', { id: madeId })).data?.session?.status;
    if (status !== 'STOPPED') await fail(`the server says the stopped session is ${status}`);
  }
  await shot('sessions');
  await row.$('button[data-action="open"]').then((button) => button.click());
  const opened = await page.evaluate(() => ({
    query: document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue(),
    variables: document.querySelector('.graphiql-editor-tool .CodeMirror').CodeMirror.getValue(),
  }));
  if (!opened.query.includes('query Results') || JSON.parse(opened.variables).id !== sessionId) {
    await fail(`"open" wrote ${JSON.stringify(opened)}`);
  }

  // "chart" draws the session: a uPlot line over its filled timeseries, and bars of its
  // events by the picked field (the browser this check started made execs in its window).
  await page.click(`tr[data-session="${sessionId}"] button[data-action="chart"]`);
  await page
    .waitForSelector(`[data-chart="${sessionId}"] .eunomia-line .uplot canvas`, { timeout: STEP_MS })
    .catch(() => fail('the chart drew no line', diagnostics()));
  await page.selectOption(`[data-chart="${sessionId}"] select[name="groupBy"]`, 'kind');
  await page
    .waitForSelector(`[data-chart="${sessionId}"] .eunomia-aggregate tr[data-key="exec"]`, { timeout: STEP_MS })
    .catch(async () =>
      fail('no exec bar after picking kind', [await page.textContent(`[data-chart="${sessionId}"]`).catch(() => ''), ...diagnostics()]),
    );
  const buckets = Number(await page.getAttribute(`[data-chart="${sessionId}"] .eunomia-line`, 'data-buckets'));
  if (!(buckets >= 1)) await fail(`the line has ${buckets} buckets`);

  // Exports: the bars as CSV, the events as JSON Lines.
  const saved = async (selector) => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
    return { name: download.suggestedFilename(), text: fs.readFileSync(await download.path(), 'utf8') };
  };
  const csv = await saved(`[data-chart="${sessionId}"] button[data-export="csv"]`);
  const csvLines = csv.text.trim().split('\n');
  if (csv.name !== `${sessionId}-kind.csv` || csvLines[0] !== 'kind,count' || !csvLines.some((l) => /^exec,[1-9]/.test(l))) {
    await fail(`the CSV export is ${JSON.stringify(csv)}`);
  }
  const jsonl = await saved(`[data-chart="${sessionId}"] button[data-export="jsonl"]`);
  const events = jsonl.text.trim().split('\n').map((line) => JSON.parse(line));
  if (jsonl.name !== `${sessionId}.jsonl` || !events.some((e) => e.kind === 'exec')) {
    await fail(`the JSON Lines export is ${jsonl.name}: ${jsonl.text.slice(0, 200)}`);
  }

  // Another operation on a numeric field: the longest exec-to-exit time by kind, in ns.
  await page.selectOption(`[data-chart="${sessionId}"] select[name="op"]`, 'MAX');
  await page
    .waitForFunction(
      (id) => {
        const bar = document.querySelector(`[data-chart="${id}"] .eunomia-aggregate tr[data-key="exit"]`);
        const field = document.querySelector(`[data-chart="${id}"] select[name="field"]`)?.value;
        return field === 'duration_ns' && Number(bar?.dataset.value) > 0;
      },
      sessionId,
      { timeout: STEP_MS },
    )
    .catch(async () =>
      fail('no MAX(duration_ns) bar for exit', [await page.textContent(`[data-chart="${sessionId}"]`).catch(() => ''), ...diagnostics()]),
    );
  // The process tracker has one per-event measure: its spread is drawn unasked.
  await page
    .waitForSelector(
      `[data-chart="${sessionId}"] .eunomia-histogram[data-field="duration_ns"] .eunomia-histogram-bars tr[data-value]`,
      { timeout: STEP_MS },
    )
    .catch(async () =>
      fail('no histogram of duration_ns', [await page.textContent(`[data-chart="${sessionId}"]`).catch(() => ''), ...diagnostics()]),
    );
  await page.$eval(`[data-chart="${sessionId}"]`, (chart) => chart.scrollTo(0, 0));
  await shot('chart');

  // Live events over the websocket (the caller runs processes meanwhile): rows appear.
  await page.click(`[data-chart="${sessionId}"] button[data-action="live"]`);
  await page
    .waitForSelector(`[data-chart="${sessionId}"] .eunomia-live .eunomia-live-row[data-seq]`, { timeout: STEP_MS })
    .catch(async () => fail('no live event arrived', [await page.textContent(`[data-chart="${sessionId}"] .eunomia-live`).catch(() => ''), ...diagnostics()]));
  const received = Number(await page.getAttribute(`[data-chart="${sessionId}"] .eunomia-live`, 'data-received'));
  if (!(received >= 1)) await fail(`the live view counted ${received} events`);
  await page.click(`[data-chart="${sessionId}"] button[data-action="live"]`);

  // A stack tracker's session (the caller starts a profile one) draws its flame graph.
  const profileRow = await page
    .waitForSelector('tr[data-session]:has-text("profile")', { timeout: STEP_MS })
    .catch(() => fail('no profile session listed', diagnostics()));
  const profileId = await profileRow.getAttribute('data-session');
  await page.click(`tr[data-session="${profileId}"] button[data-action="chart"]`);
  await page
    .waitForFunction(
      (id) => document.querySelector(`[data-chart="${id}"] img.eunomia-flame`)?.naturalWidth > 0,
      profileId,
      { timeout: STEP_MS },
    )
    .catch(async () => fail('no flame graph drawn', [await page.textContent(`[data-chart="${profileId}"]`).catch(() => ''), ...diagnostics()]));
  const folded = await saved(`[data-chart="${profileId}"] button[data-export="folded"]`);
  if (folded.name !== `${profileId}.folded`) await fail(`the folded export is named ${folded.name}`);
  // With CONSOLE_CHECK_HOT (the profiled program's hot function): the drawing's frames
  // of that function hold most of the samples, more than any other leaf could.
  const hot = process.env.CONSOLE_CHECK_HOT;
  if (hot) {
    const svg = await page.evaluate(
      async ({ id, token }) =>
        (await fetch(`/sessions/${id}/flamegraph.svg`, { headers: token ? { Authorization: `Bearer ${token}` } : {} })).text(),
      { id: profileId, token },
    );
    let share = 0;
    for (const m of svg.matchAll(/<title>([^<]*?) \(([\d,]+) samples?, ([\d.]+)%\)<\/title>/g)) {
      if (m[1] === hot) share += Number(m[3]);
    }
    if (!(share > 50)) await fail(`${hot} holds ${share}% of the flame graph`, [svg.slice(0, 400)]);
    console.log(`flame graph: ${hot} ${share.toFixed(1)}%`);
  }
  await page.locator(`[data-chart="${profileId}"] img.eunomia-flame`).scrollIntoViewIfNeeded();
  await shot('flamegraph');

  // The rules panel lists the rules with hits; an operator turns one off and on again.
  await page.click('[aria-label="Show Rules"]').catch(() => fail('no Rules button in the sidebar', diagnostics()));
  await page
    .waitForSelector('.eunomia-rules tr[data-rule]', { timeout: STEP_MS })
    .catch(() => fail('the rules panel lists no rule', diagnostics()));
  const rules = await page.$$eval('.eunomia-rules tr[data-rule]', (rows) => rows.map((r) => r.getAttribute('data-rule')));
  if (rules.length < 35) await fail(`the rules panel lists ${rules.length} rules`);
  await shot('rules');
  const toggles = await page.$$('.eunomia-rules button[data-action="toggle"]');
  if (role === 'VIEWER' && toggles.length) await fail('a viewer is offered rule toggles');
  if (role === 'OPERATOR') {
    const first = `.eunomia-rules tr[data-rule="${rules[0]}"]`;
    const was = await page.getAttribute(first, 'data-enabled');
    const flipped = was === 'true' ? 'false' : 'true';
    await page.click(`${first} button[data-action="toggle"]`);
    await page
      .waitForSelector(`${first}[data-enabled="${flipped}"]`, { timeout: STEP_MS })
      .catch(() => fail(`toggling ${rules[0]} did not take`, diagnostics()));
    await page.click(`${first} button[data-action="toggle"]`);
    await page
      .waitForSelector(`${first}[data-enabled="${was}"]`, { timeout: STEP_MS })
      .catch(() => fail(`toggling ${rules[0]} back did not take`, diagnostics()));
  }

  // With CONSOLE_CHECK_PROFILES=a,b (two stored profiles): the seccomp panel lists them,
  // downloads one as the OCI JSON the server holds, and diffs them.
  const profiles = (process.env.CONSOLE_CHECK_PROFILES || '').split(',').filter(Boolean);
  if (profiles.length === 2) {
    const [a, b] = profiles;
    await page.click('[aria-label="Show Seccomp profiles"]').catch(() => fail('no Seccomp button', diagnostics()));
    await page
      .waitForSelector(`.eunomia-seccomp tr[data-profile="${a}"]`, { timeout: STEP_MS })
      .catch(() => fail(`the seccomp panel does not list ${a}`, diagnostics()));
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`.eunomia-seccomp tr[data-profile="${a}"] button`),
    ]);
    if (download.suggestedFilename() !== `${a}.json`) await fail(`downloaded ${download.suggestedFilename()}`);
    const saved = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
    if (saved.defaultAction !== 'SCMP_ACT_ERRNO') await fail(`the download holds ${JSON.stringify(saved)}`);
    await page.selectOption('.eunomia-diff select[name="first"]', a);
    await page.selectOption('.eunomia-diff select[name="second"]', b);
    await page.click('.eunomia-diff button');
    const diffText = await page
      .waitForSelector('.eunomia-diff-result', { timeout: STEP_MS })
      .then((el) => el.textContent())
      .catch(() => fail('the diff showed nothing', diagnostics()));
    console.log(`seccomp diff: ${diffText}`);
  }

  // The alerts panel filters by severity.
  await page.click('[aria-label="Show Alerts"]');
  await page.selectOption('.eunomia-alerts select[name="minSeverity"]', 'CRITICAL');
  await page
    .waitForSelector('.eunomia-alerts p, .eunomia-alerts tr[data-alert]', { timeout: STEP_MS })
    .catch(() => fail('the alerts panel did not render after a filter', diagnostics()));
  if (await page.$('.eunomia-alerts .eunomia-catalog-error')) {
    await fail(`the alerts panel shows an error: ${await page.textContent('.eunomia-alerts')}`);
  }
  // The caller's rule session alerts on a cat of /etc/shadow twice a second: at HIGH they
  // show, and new ones arrive through alertRaised (the list is read only every 30 s).
  await page.selectOption('.eunomia-alerts select[name="minSeverity"]', 'HIGH');
  await page
    .waitForSelector('.eunomia-alerts tr[data-rule="read_sensitive_file"]', { timeout: STEP_MS })
    .catch(async () => fail('no read_sensitive_file alert listed', [await page.textContent('.eunomia-alerts').catch(() => ''), ...diagnostics()]));
  const alertText = await page.textContent('.eunomia-alerts tr[data-rule="read_sensitive_file"]');
  if (!alertText.includes('T1003.008') || !alertText.includes('OS Credential Dumping') || !alertText.includes('cat (')) {
    await fail(`an alert reads ${JSON.stringify(alertText)}`);
  }
  const alertIds = await page.$$eval('.eunomia-alerts tr[data-alert]', (rows) => rows.map((r) => r.dataset.alert));
  await page
    .waitForFunction(
      (known) => [...document.querySelectorAll('.eunomia-alerts tr[data-alert]')].some((r) => !known.includes(r.dataset.alert)),
      alertIds,
      { timeout: 2000 },
    )
    .catch(() => fail('no new alert arrived within 2 s', diagnostics()));
  await shot('alerts');
  // Filtered by rule: another rule's name leaves none of these, this one's only these.
  const byRule = async (rule, holds, what) => {
    await page.fill('.eunomia-alerts input[name="rule"]', rule);
    await page.press('.eunomia-alerts input[name="rule"]', 'Tab');
    await page
      .waitForFunction(holds, undefined, { timeout: STEP_MS })
      .catch(async () => fail(what, [await page.textContent('.eunomia-alerts').catch(() => '')]));
  };
  await byRule(
    'write_below_etc',
    () => !document.querySelector('.eunomia-alerts tr[data-alert]') && document.querySelector('.eunomia-alerts p'),
    'filtering alerts by another rule left some listed',
  );
  await byRule(
    'read_sensitive_file',
    () => {
      const rows = [...document.querySelectorAll('.eunomia-alerts tr[data-alert]')];
      return rows.length > 0 && rows.every((r) => r.dataset.rule === 'read_sensitive_file');
    },
    'filtering alerts by their rule listed none, or others',
  );

  // Opens a sidebar panel; one already open (its button then reads "Hide ...") stays.
  const showPanel = async (title) => {
    if (await page.$(`[aria-label="Hide ${title}"]`)) return;
    await page.click(`[aria-label="Show ${title}"]`).catch(() => fail(`no ${title} button in the sidebar`, diagnostics()));
  };

  // With CONSOLE_CHECK_CONTAINER (a running container's name): it is listed with its
  // namespaces, and its "trace" button writes a startSession for it into the editors,
  // which an operator runs.
  const containerName = process.env.CONSOLE_CHECK_CONTAINER;
  if (containerName) {
    await showPanel('Containers');
    const containerRow = await page
      .waitForSelector(`.eunomia-containers tr[data-container]:has-text("${containerName}")`, { timeout: STEP_MS })
      .catch(() => fail(`the containers panel does not list ${containerName}`, diagnostics()));
    const containerId = await containerRow.getAttribute('data-container');
    const namespaces = await containerRow.$eval('[data-namespaces]', (el) => el.dataset.namespaces);
    if (!/\bpid:\d+/.test(namespaces) || !/\bmnt:\d+/.test(namespaces)) await fail(`its namespaces read ${JSON.stringify(namespaces)}`);
    await containerRow.$('button[data-trace="process"]').then((button) => button.click());
    const traced = await page.evaluate(() => ({
      query: document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue(),
      variables: document.querySelector('.graphiql-editor-tool .CodeMirror').CodeMirror.getValue(),
    }));
    const tracedVars = JSON.parse(traced.variables);
    if (!traced.query.includes('startSession') || tracedVars.container !== containerId || tracedVars.tracker !== 'process') {
      await fail(`"trace" wrote ${JSON.stringify(traced)}`);
    }
    if (role === 'OPERATOR') {
      await page
        .waitForFunction((query) => localStorage.getItem('graphiql:query') === query, traced.query)
        .catch(() => fail('GraphiQL did not take the trace mutation'));
      await page.evaluate(() => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.setValue(''));
      await page.click('.graphiql-execute-button');
      await page
        .waitForFunction(
          () => /"status": "RUNNING"/.test(document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue() ?? ''),
          undefined,
          { timeout: STEP_MS },
        )
        .catch(async () =>
          fail('the trace mutation did not start a session', [
            await page.evaluate(() => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue() ?? ''),
            ...diagnostics(),
          ]),
        );
      const answer = JSON.parse(
        await page.evaluate(() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()),
      );
      const filter = (await ask('query($id: ID!) { session(id: $id) { filter } }', { id: answer.data.startSession.id })).data?.session?.filter;
      if (!JSON.stringify(filter).includes(containerId)) await fail(`the traced session's filter is ${JSON.stringify(filter)}`);
    }
    await shot('containers');
  }

  // The containers, alerts and health panels render from the API (the health panel
  // with the version the query above returned, and the losses since start).
  for (const [title, ready] of [
    ['Containers', '.eunomia-containers table, .eunomia-containers p'],
    ['Alerts', '.eunomia-alerts p, .eunomia-alerts tr[data-alert]'],
    ['Health', `.eunomia-health dl[data-version="${version}"] [data-store-ok="true"] ~ .eunomia-losses`],
  ]) {
    await showPanel(title);
    await page
      .waitForSelector(ready, { timeout: STEP_MS })
      .catch(async () => fail(`the ${title} panel did not render`, [await page.textContent('.graphiql-plugin').catch(() => ''), ...diagnostics()]));
  }
  await shot('health');

  // A shared link opens its operation and variables in the editors; `/` leads here.
  const linkQuery = 'query Linked($n: Int) { trackers { name } }';
  const linkVariables = '{"n": 1}';
  await page.goto(
    `${pageUrl}?query=${encodeURIComponent(linkQuery)}&variables=${encodeURIComponent(linkVariables)}`,
    { waitUntil: 'load' },
  );
  const linked = await page
    .waitForFunction(
      () => {
        const query = document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror?.getValue();
        const variables = document.querySelector('.graphiql-editor-tool .CodeMirror')?.CodeMirror?.getValue();
        return query ? { query, variables } : false;
      },
      undefined,
      { timeout: STEP_MS },
    )
    .then((handle) => handle.jsonValue())
    .catch(() => fail('a ?query= link rendered no query editor', diagnostics()));
  if (linked.query !== linkQuery) await fail(`a ?query= link opened ${JSON.stringify(linked.query)}`);
  if (linked.variables !== linkVariables) {
    await fail(`a ?variables= link opened ${JSON.stringify(linked.variables)}`);
  }
  const root = await page.goto(`${base.origin}/`, { waitUntil: 'load' });
  if (!root?.ok() || new URL(page.url()).pathname !== '/graphql') {
    await fail(`/ led to ${page.url()} (HTTP ${root?.status()})`);
  }

  // Give late requests (fonts, lazy chunks) a moment to show up before judging.
  await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
  if (foreign.length) {
    await fail(`the page made requests to hosts other than ${allowedHost}`, foreign);
  }
  if (pageErrors.length) {
    await fail('the page threw errors', pageErrors);
  }

  if (process.env.CONSOLE_CHECK_SCREENSHOT) {
    await page.screenshot({ path: process.env.CONSOLE_CHECK_SCREENSHOT });
  }
  clearTimeout(watchdog);
  await cleanUp();
  console.log(`console ok: version ${version}`);
  process.exit(0);
} catch (err) {
  await fail(err.message.split('\n')[0], diagnostics());
}
