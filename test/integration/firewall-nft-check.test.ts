// The interception firewall's rendered scripts against the real nft, in check mode (-c: parse and
// validate against the kernel, commit nothing), inside a network namespace of this test's own so not
// even a failed check could touch the host's ruleset. Needs root (ip netns add) and nft.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { renderRemoval, renderRuleset, type FirewallSpec } from '../../src/intercept/firewall.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';

const base: FirewallSpec = { port: 15001, interfaces: ['lan0'], sources: [], excludes: [], dports: [] };
const spec = (over: Partial<FirewallSpec>): FirewallSpec => ({ ...base, ...over });

const skipNft = requirement(process.getuid?.() !== 0 ? 'needs root (ip netns add)' : missingPrograms(['ip', 'nft']));
if (skipNft) process.stdout.write(`# skipping the nft check-mode tests: ${skipNft}\n`);

describe('nft -c accepts the rendered scripts', { skip: skipNft }, () => {
  const ns = `ew-fwu-${process.pid}`;

  function nftCheck(script: string): { status: number | null; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: script, encoding: 'utf8', timeout: 20_000 });
    return { status: r.status, stderr: r.stderr };
  }

  before(() => {
    const r = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
    assert.equal(r.status, 0, `ip netns add ${ns}: ${r.stderr}`);
  });

  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    assert.ok(!spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.includes(ns), `namespace ${ns} left behind`);
  });

  const specs: Array<[string, FirewallSpec]> = [
    ['minimal', base],
    ['every option', spec({ interfaces: ['lan0', 'wlan0'], sources: ['192.168.0.0/16', '2001:db8:1::/64'], excludes: ['10.0.0.0/8', '10.1.0.0/16', 'fd00::/8'], dports: [80, 443, 8080], mark: 0xff00, table: 100 })],
    ['IPv4 only with sources', spec({ family: 'ipv4', sources: ['192.168.1.0/24'], excludes: ['0.0.0.0/0'] })],
    ['IPv6 only', spec({ family: 'ipv6', excludes: ['2001:db8::/32'], dports: [443] })],
    ['IPv6 sources only, both families', spec({ sources: ['2001:db8::/32'] })],
  ];
  for (const [name, s] of specs) {
    it(`${name}`, () => {
      const r = nftCheck(renderRuleset(s));
      assert.equal(r.status, 0, r.stderr);
    });
  }

  it('the removal script', () => {
    const r = nftCheck(renderRemoval());
    assert.equal(r.status, 0, r.stderr);
  });

  it('and the check is real: a broken script is refused', () => {
    const r = nftCheck(renderRuleset(base).replace('tproxy ip to', 'tproxy ipx to'));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /syntax error|Error/);
  });
});
