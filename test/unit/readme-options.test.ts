// The README's options table is generated from the config schema; this fails when they disagree.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { markdownTable, optionsOf } from '../../src/config/schema.js';
import { SECTIONS } from '../../src/gateway/settings.js';

it('README.md lists every option of edgeward start as the schema has it (fix: npm run docs:options)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const m = /<!-- options:start[^>]*-->\n([\s\S]*?)<!-- options:end -->/.exec(readme);
  assert.ok(m, 'README.md has no options:start / options:end markers');
  assert.equal(m[1], markdownTable(SECTIONS), 'the README options table disagrees with the schema: run `npm run docs:options`');
  for (const o of optionsOf(SECTIONS)) assert.ok(m[1]!.includes(`--${o.flag}`), `--${o.flag} missing from the README`);
});
