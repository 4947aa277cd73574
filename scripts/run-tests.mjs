#!/usr/bin/env node
// Runs the test suites in order (unit, integration, lab) with Node's test runner and tsx.
// Usage: node scripts/run-tests.mjs [unit|integration|lab|FILE...]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const suites = ['unit', 'integration', 'lab'];

function findTests(dir) {
  let out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const files = args.length === 0
  ? suites.flatMap((s) => findTests(join('test', s)))
  : args.flatMap((a) => (suites.includes(a) ? findTests(join('test', a)) : [a]));

const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
