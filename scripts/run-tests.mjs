#!/usr/bin/env node
// Runs the test suites in order (unit, integration, lab) with Node's test runner and tsx, after a
// preflight: the programs and the privilege the chosen suites need (test/requirements.json) must be
// there, else it stops at once, naming the Debian packages and the command that installs them.
// Usage: node scripts/run-tests.mjs [unit|integration|lab|FILE...]
//        EDGEWARD_TEST_SUITES=unit npm test   (the suites to run when no argument names them)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const suites = ['unit', 'integration', 'lab'];
const requirements = JSON.parse(readFileSync(join('test', 'requirements.json'), 'utf8'));

function findTests(dir) {
  let out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** The suite a test file belongs to (test/SUITE/...), or undefined. */
function suiteOf(file) {
  const [top, suite] = relative('.', file).split(/[\\/]/);
  return top === 'test' && suites.includes(suite) ? suite : undefined;
}

function hasProgram(name) {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { stdio: 'ignore' }).status === 0;
}

/** What keeps `chosen` suites from running here, as lines for the user; empty when nothing does. */
function preflight(chosen) {
  const programs = [...new Set(chosen.flatMap((s) => requirements.suites[s].programs))];
  const missing = programs.filter((p) => !hasProgram(p));
  const needRoot = chosen.filter((s) => requirements.suites[s].root);
  const notRoot = needRoot.length > 0 && process.getuid?.() !== 0;
  const needBuild = chosen.some((s) => s !== 'unit') && !existsSync(join('dist', 'cli', 'main.js'));
  const lines = [];
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((p) => requirements.packages[p] ?? p))];
    lines.push(`missing programs: ${missing.map((p) => `${p} (Debian package ${requirements.packages[p] ?? p})`).join(', ')}`);
    lines.push(`install them as root:  apt-get update && apt-get install -y ${packages.join(' ')}`);
    lines.push('or run `bash .ci/run` as root: it installs every package the tests use, then runs npm test');
  }
  if (notRoot) lines.push(`the ${needRoot.join(' and ')} tests need root (network namespaces, nftables, a private /etc/resolv.conf): run npm test as root`);
  if (needBuild) lines.push('edgeward is not built (no dist/cli/main.js): run `npm run build`, or `npm test`, which builds first');
  return lines;
}

const args = process.argv.slice(2);
const named = args.length > 0 ? args : (process.env.EDGEWARD_TEST_SUITES ?? '').split(/[\s,]+/).filter(Boolean);
for (const a of named) {
  if (!suites.includes(a) && !existsSync(a)) {
    console.error(`run-tests: "${a}" is neither a suite (${suites.join(', ')}) nor a test file`);
    process.exit(2);
  }
}
const files = named.length === 0
  ? suites.flatMap((s) => findTests(join('test', s)))
  : named.flatMap((a) => (suites.includes(a) ? findTests(join('test', a)) : [a]));
const chosen = suites.filter((s) => files.some((f) => suiteOf(f) === s));

const problems = preflight(chosen);
if (problems.length > 0) {
  console.error(`run-tests: this machine cannot run the ${chosen.join(', ')} tests as they are:`);
  for (const line of problems) console.error(`  - ${line}`);
  console.error('  The unit tests alone need none of this: `npm test -- unit`, or EDGEWARD_TEST_SUITES=unit npm test.');
  process.exit(1);
}

const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
