// The supervisor's promise: when a later part of start-up fails, the services already started are
// stopped and cleaned up. Here the intercept service has applied its firewall (--firewall) when the
// REST API cannot listen: edgeward must exit 1 naming the cause and leave no nftables table and no
// policy routing behind. Runs in a network namespace of its own, so the host's ruleset is never touched.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from '../helpers/edgeward.js';
import { runCmd } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';

const skip = requirement(process.getuid?.() !== 0 ? 'needs root (a network namespace, nftables, IP_TRANSPARENT)' : missingPrograms(['nft', 'ip']));
if (skip) process.stdout.write(`# skipping the start-up cleanup test: ${skip}\n`);

const ns = `ew-start-${process.pid}`;
process.once('exit', () => spawnSync('ip', ['netns', 'del', ns]));

function inNs(...argv: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('start-up fails after the intercept service applied its firewall', { skip }, () => {
  const data = mkdtempSync(join(tmpdir(), 'edgeward-startup-'));
  before(() => {
    assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, 'ip netns add');
    inNs('ip', 'link', 'set', 'lo', 'up');
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(data, { recursive: true, force: true });
  });

  it('exits 1 naming the API address, and removes the firewall it had applied', async () => {
    const rulesBefore = inNs('ip', 'rule', 'show') + inNs('ip', '-6', 'rule', 'show');
    // 192.0.2.1 is on no interface of the namespace: the API's listen fails with EADDRNOTAVAIL,
    // after SOCKS and intercept (with its firewall) are up
    const r = await runCmd(
      ['ip', 'netns', 'exec', ns, process.execPath, BIN, 'start', '--socks', '127.0.0.1:0', '--api', '192.0.2.1:8080', '--data', data, '--log-format', 'json', '--workers', '2', '--intercept', '15001', '--firewall', '--intercept-interface', 'lo'],
      { timeoutMs: 30_000 },
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /"msg":"firewall applied"/, 'the firewall was applied before the failure');
    assert.match(r.stderr, /"msg":"cannot start"/);
    assert.match(r.stderr, /EADDRNOTAVAIL/);
    assert.match(r.stderr, /"msg":"firewall removed"/);
    assert.doesNotMatch(inNs('nft', 'list', 'tables'), /edgeward_intercept/, 'no nftables table left behind');
    assert.equal(inNs('ip', 'rule', 'show') + inNs('ip', '-6', 'rule', 'show'), rulesBefore, 'the policy routing rules are as they were');
  });
});
