#!/usr/bin/env node
// Benchmark of the console's live event table (not a test): in Debian's headless
// Chromium, opens a running session's chart, turns on live events and, for 5 s, counts
// the events the page received and how often it drew (requestAnimationFrame gaps).
//
//   node tests/console/live_bench.mjs <base-url> <session-id> [token]
//
// Prints one line: received events/s, frame gap p50/p99/max in ms, and the longest
// main-thread task. Exits 1 when the live view does not open.
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// How long the page may take to open the live view (a timeout, not a machine value).
const OPEN_MS = 20 * 1000;
const [base, id, token = ''] = process.argv.slice(2);
if (!base || !id) {
  console.error('usage: node tests/console/live_bench.mjs <base-url> <session-id> [token]');
  process.exit(2);
}
const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
const { chromium } = createRequire(path.join(webDir, 'package.json'))('playwright-core');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
await page.goto(`${base}/graphql`);
if (token) {
  await page.fill('#eunomia-token-input', token);
  await page.click('#eunomia-token-apply');
}
await page.click('[aria-label="Show Sessions"]');
await page.click(`tr[data-session="${id}"] button[data-action="chart"]`);
await page.click(`[data-chart="${id}"] button[data-action="live"]`);
await page.waitForSelector(`[data-chart="${id}"] .eunomia-live`, { timeout: OPEN_MS }).catch(async () => {
  console.error('the live view did not open');
  await browser.close();
  process.exit(1);
});
// Let the stream settle before measuring.
await page.waitForTimeout(1000);
const result = await page.evaluate(async (id) => {
  const live = document.querySelector(`[data-chart="${id}"] .eunomia-live`);
  const longest = { ms: 0 };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) longest.ms = Math.max(longest.ms, entry.duration);
  }).observe({ entryTypes: ['longtask'] });
  const before = Number(live.dataset.received);
  const gaps = [];
  let last = performance.now();
  const started = last;
  await new Promise((done) => {
    const frame = (now) => {
      gaps.push(now - last);
      last = now;
      if (now - started < 5000) requestAnimationFrame(frame);
      else done();
    };
    requestAnimationFrame(frame);
  });
  const secs = (performance.now() - started) / 1000;
  const received = (Number(live.dataset.received) - before) / secs;
  gaps.sort((a, b) => a - b);
  const at = (p) => gaps[Math.min(gaps.length - 1, Math.floor((p / 100) * gaps.length))];
  return { received, p50: at(50), p99: at(99), max: gaps[gaps.length - 1], longest: longest.ms };
}, id);
console.log(
  `live view: ${Math.round(result.received)} events/s received; frame gap p50 ${result.p50.toFixed(1)} ms, ` +
    `p99 ${result.p99.toFixed(1)} ms, max ${result.max.toFixed(1)} ms; longest task ${result.longest.toFixed(0)} ms`,
);
await browser.close();
