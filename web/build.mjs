// Builds the console into dist/: index.html, console.js, console.css and nothing else.
// The server embeds these three files (include_bytes!) and serves them at
// /graphql, /graphql/assets/console.js and /graphql/assets/console.css, so the
// page must load nothing from anywhere else: the check at the end fails the
// build on any external URL, protocol-relative URL, @import or non-data url().
import * as esbuild from 'esbuild';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// CONSOLE_OUT builds elsewhere (the license list too), for the test that compares a
// fresh build with the committed dist/.
const out = process.env.CONSOLE_OUT ? path.resolve(process.env.CONSOLE_OUT) : null;
const dist = out ?? path.join(here, 'dist');
const licenses = path.join(out ?? here, 'THIRD_PARTY_LICENSES.txt');
const EXPECTED = ['console.css', 'console.js', 'index.html'];

// Documentation links inside the bundled libraries, rewritten so that the bundle
// holds no URL to another host. Each must match exactly `count` times in its
// file: a dependency upgrade that moves one fails the build instead of slipping by.
const REWRITES = [
  {
    file: 'react-dom/cjs/react-dom.production.min.js',
    from: '"https://reactjs.org/docs/error-decoder.html?invariant="',
    to: '"reactjs.org/docs/error-decoder.html?invariant="',
  },
  {
    file: 'graphql/jsutils/instanceOf.mjs',
    from: 'https://yarnpkg.com/en/docs/selective-version-resolutions',
    to: 'yarnpkg.com/en/docs/selective-version-resolutions',
  },
  {
    file: 'graphql/type/scalars.mjs',
    from: '[IEEE 754](https://en.wikipedia.org/wiki/IEEE_floating_point)',
    to: 'IEEE 754',
  },
  {
    file: 'graphql/type/directives.mjs',
    from: '[CommonMark](https://commonmark.org/)',
    to: 'CommonMark',
  },
  {
    // Dead code with the bundled React 18 (it guards against React 15).
    file: 'graphiql/esm/GraphiQL.js',
    from: "'If you are using a CDN source (jsdelivr, unpkg, etc), follow this example:',",
    to: '',
  },
  {
    file: 'graphiql/esm/GraphiQL.js',
    from: "'https://github.com/graphql/graphiql/blob/master/examples/graphiql-cdn/index.html#L49',",
    to: '',
  },
  {
    // The default logo (App.jsx passes its own, so this is never rendered).
    file: 'graphiql/esm/GraphiQL.js',
    from: 'href: "https://github.com/graphql/graphiql", target: "_blank", rel: "noreferrer"',
    to: 'href: "#"',
  },
  {
    // The short-keys dialog: the link to CodeMirror's manual becomes plain text.
    file: 'graphiql/esm/GraphiQL.js',
    from: 'React.createElement("a", { href: "https://codemirror.net/5/doc/manual.html#keymaps", target: "_blank", rel: "noopener noreferrer" }, "CodeMirror Key Maps")',
    to: '"CodeMirror key maps"',
  },
].map((r) => ({ count: 1, ...r, seen: 0 }));

const rewritePlugin = {
  name: 'offline-rewrites',
  setup(build) {
    const files = [...new Set(REWRITES.map((r) => r.file))];
    const filter = new RegExp(
      `node_modules[\\\\/](${files.map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\//g, '[\\\\/]')).join('|')})$`,
    );
    build.onLoad({ filter }, async (args) => {
      let text = await fs.promises.readFile(args.path, 'utf8');
      const rel = args.path.split(/node_modules[\\/]/).pop().replace(/\\/g, '/');
      for (const r of REWRITES.filter((r) => r.file === rel)) {
        const parts = text.split(r.from);
        r.seen += parts.length - 1;
        text = parts.join(r.to);
      }
      const ext = path.extname(args.path);
      return { contents: text, loader: ext === '.mjs' || ext === '.js' ? 'js' : 'default' };
    });
  },
};

function fail(message) {
  console.error(`build failed: ${message}`);
  process.exit(1);
}

// The sources are TypeScript: esbuild only strips the types, so tsc checks them first
// (tsconfig.json: strict) and a type error fails the build.
try {
  execFileSync(process.execPath, [path.join(here, 'node_modules/typescript/bin/tsc'), '-p', here], {
    stdio: 'inherit',
  });
} catch {
  fail('tsc found type errors (above)');
}

// Start from an empty dist/ so that no stale file survives.
fs.mkdirSync(dist, { recursive: true });
for (const name of fs.readdirSync(dist)) fs.rmSync(path.join(dist, name), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { console: 'src/main.tsx' },
  outdir: dist,
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  // GraphiQL's stylesheet already inlines its fonts; anything else it might pull
  // in is inlined too rather than emitted as a separate file.
  loader: { '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.svg': 'dataurl', '.png': 'dataurl' },
  sourcemap: false,
  legalComments: 'none', // the licenses go to THIRD_PARTY_LICENSES.txt instead
  charset: 'ascii',
  metafile: true,
  logLevel: 'warning',
  plugins: [rewritePlugin],
});

for (const r of REWRITES) {
  if (r.seen !== r.count) fail(`rewrite in ${r.file} matched ${r.seen} times, expected ${r.count}: ${r.from}`);
}

fs.copyFileSync(path.join(here, 'src/index.html'), path.join(dist, 'index.html'));

// --- The offline check -------------------------------------------------------
const names = fs.readdirSync(dist).sort();
if (JSON.stringify(names) !== JSON.stringify(EXPECTED)) {
  fail(`dist/ holds ${names.join(', ')}; expected exactly ${EXPECTED.join(', ')}`);
}

// XML namespace names: identifiers the DOM needs for SVG and MathML, never fetched.
const NAMESPACES = new Set([
  'http://www.w3.org/2000/svg',
  'http://www.w3.org/1999/xhtml',
  'http://www.w3.org/1999/xlink',
  'http://www.w3.org/XML/1998/namespace',
  'http://www.w3.org/1998/Math/MathML',
]);
const problems = [];
for (const name of names) {
  const text = fs.readFileSync(path.join(dist, name), 'utf8');
  // A scheme followed by a host. A bare "http://" prefix with no host (markdown-it
  // turning "www.x" in schema descriptions into a link) is no URL of ours.
  for (const m of text.matchAll(/\b(?:https?|wss?|ftp):\/\/[A-Za-z0-9.-]+[^\s"'`<>()\\]*/gi)) {
    if (!NAMESPACES.has(m[0])) problems.push(`${name}: URL ${m[0]}`);
  }
  // Protocol-relative URLs ("//host/...") in strings or CSS.
  for (const m of text.matchAll(/["'(]\/\/[A-Za-z0-9-]+\.[A-Za-z][^\s"'`<>()\\]*/g)) {
    problems.push(`${name}: protocol-relative URL ${m[0]}`);
  }
  if (/\bcdn\b/i.test(text)) problems.push(`${name}: mentions a CDN`);
  if (/\.map\b["'\s]|sourceMappingURL/.test(text)) problems.push(`${name}: source map reference`);
  if (name === 'console.css') {
    if (/@import/i.test(text)) problems.push('console.css: @import');
    for (const m of text.matchAll(/url\(\s*["']?([^"')\s]*)/gi)) {
      if (!m[1].startsWith('data:') && !m[1].startsWith('#')) problems.push(`console.css: url(${m[1]})`);
    }
  }
}
if (problems.length) fail(`dist/ is not self-contained:\n  ${[...new Set(problems)].join('\n  ')}`);

// --- Third-party licenses of everything bundled -------------------------------
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\//);
  if (!m || packages.has(m[2])) continue;
  const dir = path.join(here, m[1]);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const licenseFile = fs
    .readdirSync(dir)
    .find((f) => /^(license|licence|copying)(\.|$)/i.test(f));
  packages.set(m[2], {
    name: pkg.name,
    version: pkg.version,
    license: typeof pkg.license === 'string' ? pkg.license : pkg.license?.type ?? 'see package',
    text: licenseFile ? fs.readFileSync(path.join(dir, licenseFile), 'utf8').trim() : '(no license file in the package)',
  });
}
const sorted = [...packages.values()].sort((a, b) => a.name.localeCompare(b.name));
const notice = [
  'Third-party code bundled into web/dist/console.js and web/dist/console.css',
  '(generated by web/build.mjs; do not edit).',
  '',
  ...sorted.map((p) => `  ${p.name} ${p.version} (${p.license})`),
  '',
  ...sorted.flatMap((p) => ['='.repeat(78), `${p.name} ${p.version}`, '-'.repeat(78), p.text, '']),
].join('\n');
fs.writeFileSync(licenses, notice);

for (const name of names) {
  const size = fs.statSync(path.join(dist, name)).size;
  console.log(`dist/${name.padEnd(12)} ${String(size).padStart(9)} bytes`);
}
console.log(`${sorted.length} bundled packages listed in THIRD_PARTY_LICENSES.txt`);
