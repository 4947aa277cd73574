// kernel/iproute.ts without the kernel: which rules and routes it recognises as edgeward's, the
// commands it runs, and the errors an operator sees, with a stand-in for the ip command.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandRunner, RunResult } from '../../src/kernel/command.js';
import { addFwmarkRule, deleteLocalRoute, IpRouteError, listFwmarkRules, listLocalRoutes } from '../../src/kernel/iproute.js';

const ok = (v: unknown): RunResult => ({ code: 0, stdout: JSON.stringify(v), stderr: '' });
function fake(...replies: RunResult[]): CommandRunner & { calls: string[][] } {
  const calls: string[][] = [];
  const run = (async (argv: readonly string[]) => {
    calls.push([...argv]);
    const r = replies.shift();
    assert.ok(r, `unexpected command: ${argv.join(' ')}`);
    return r;
  }) as CommandRunner & { calls: string[][] };
  run.calls = calls;
  return run;
}

describe('listFwmarkRules', () => {
  it('plain "from all fwmark M lookup T" rules only; edgeward\'s are those tagged proto 101', async () => {
    const rules = await listFwmarkRules('ipv4', fake(ok([
      { priority: 0, src: 'all', table: '255' },
      { priority: 1000, src: 'all', fwmark: '0x1234', table: '100' },
      { priority: 32765, src: 'all', fwmark: '0x6577', table: '25975', protocol: '101' },
      { priority: 32764, src: 'all', fwmark: '0x6577', table: '25975', iif: 'eth0' },
      { priority: 32763, src: '10.0.0.0', srclen: 8, fwmark: '0x6577', table: '25975' },
      { priority: 32762, src: 'all', fwmark: '0x6577', fwmask: '0xff', table: '25975' },
    ])));
    assert.deepEqual(rules, [
      { family: 'ipv4', priority: 1000, mark: 0x1234, table: 100, ours: false },
      { family: 'ipv4', priority: 32765, mark: 0x6577, table: 25975, ours: true },
    ]);
  });

  it('null when the family is disabled; a typed error when ip is missing', async () => {
    assert.equal(await listFwmarkRules('ipv6', fake({ code: 2, stdout: '', stderr: 'RTNETLINK answers: Address family not supported by protocol' })), null);
    await assert.rejects(listFwmarkRules('ipv4', fake({ code: null, stdout: '', stderr: '', error: 'ENOENT' })), (e: unknown) => e instanceof IpRouteError && e.code === 'ip_missing' && /install iproute2/.test(e.message));
  });
});

describe('routes and changes', () => {
  it('edgeward\'s routes in any table, plus another "local default dev lo" in the table asked about', async () => {
    const run = fake(ok([{ type: 'local', dst: 'default', dev: 'lo', table: '25975', protocol: '101' }]), ok([{ type: 'local', dst: 'default', dev: 'lo', table: '7', protocol: '4' }, { dst: '10.0.0.0/8', dev: 'eth0', table: '7' }]));
    assert.deepEqual(await listLocalRoutes('ipv4', run, 7), [
      { family: 'ipv4', table: 25975, dst: 'default', ours: true },
      { family: 'ipv4', table: 7, dst: 'default', ours: false },
    ]);
    assert.deepEqual(run.calls[0], ['ip', '-N', '-j', '-4', 'route', 'show', 'table', 'all', 'proto', '101']);
  });

  it('adds and deletes carry the tag, and a refusal for want of privilege says so', async () => {
    const run = fake(ok(''), ok(''));
    assert.equal(await addFwmarkRule('ipv6', 0x6577, 25975, run), 'ip -6 rule add fwmark 0x6577 lookup 25975 protocol 101');
    assert.equal(await deleteLocalRoute({ family: 'ipv6', table: 25975, dst: 'default', ours: true }, run), 'ip -6 route del local ::/0 dev lo table 25975 proto 101');
    await assert.rejects(
      addFwmarkRule('ipv4', 1, 2, fake({ code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted' })),
      (e: unknown) => e instanceof IpRouteError && e.code === 'permission' && /root \(CAP_NET_ADMIN\)/.test(e.message),
    );
  });
});
