// kernel/nft.ts against the real nft, inside a network namespace of this test's own (the host's
// ruleset is never touched): applying twice leaves one table, another table stays as it was, a
// reload that fails leaves the previous rules in force, counters count real packets, and removal
// restores the ruleset exactly (and is a no-op the second time).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultRunner, type CommandRunner } from '../../src/kernel/command.js';
import { applyTable, listCounters, NftError, removeTable, tableExists, type NftTable } from '../../src/kernel/nft.js';
import { ROOT } from '../helpers/process.js';

const have = (argv: string[]): boolean => spawnSync(argv[0]!, argv.slice(1)).status === 0;
const missing =
  process.getuid?.() !== 0 ? 'needs root (ip netns add, nftables)'
  : !have(['nft', '--version']) ? 'nft (nftables) is not installed'
  : !have(['ip', '-V']) ? 'ip (iproute2) is not installed'
  : false;
// in CI a missing privilege or tool is a failure, not a skip
const ci = process.env.CI === 'true';
if (missing && !ci) process.stdout.write(`# skipping the kernel/nft integration tests: ${missing}\n`);

const T: NftTable = { family: 'inet', name: 'edgeward_test' };
// a named counter and a rule counter, both counting TCP SYNs to port 9 sent over loopback
const BODY = [
  '\tcounter syn_to_9 {',
  '\t\tcomment "SYNs to port 9"',
  '\t}',
  '\tchain output {',
  '\t\ttype filter hook output priority 0; policy accept;',
  '\t\ttcp dport 9 tcp flags & (syn | ack) == syn counter name "syn_to_9"',
  '\t\ttcp dport 9 tcp flags & (syn | ack) == syn counter comment "syn rule"',
  '\t}',
];

describe('kernel/nft: an owned table in a network namespace', { skip: missing && !ci ? missing : false }, () => {
  const ns = `ew-nft-${process.pid}`;
  let created = false;
  const cleanup = (): void => {
    if (created) spawnSync('ip', ['netns', 'del', ns]);
    created = false;
  };
  process.once('exit', cleanup);
  const inNs: CommandRunner = (argv, input) => defaultRunner(['ip', 'netns', 'exec', ns, ...argv], input);
  const sh = (...argv: string[]): string => {
    const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  let pristine = '';

  before(() => {
    assert.equal(missing, false, `CI=true and these tests cannot run: ${String(missing)}`);
    const r = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
    assert.equal(r.status, 0, `ip netns add ${ns}: ${r.stderr}`);
    created = true;
    sh('ip', 'link', 'set', 'lo', 'up');
    sh('nft', 'add', 'table', 'inet', 'other');
    sh('nft', 'add', 'chain', 'inet', 'other', 'c', '{ type filter hook input priority 0; }');
    sh('nft', 'add', 'rule', 'inet', 'other', 'c', 'tcp', 'dport', '22', 'accept');
    pristine = sh('nft', 'list', 'ruleset');
  });

  after(() => {
    cleanup();
    assert.ok(!spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').some((l) => l.split(' ')[0] === ns), `namespace ${ns} left behind`);
  });

  it('apply twice: one table with the body, the other table untouched', async () => {
    assert.equal(await tableExists(T, inNs), false);
    await applyTable(T, BODY, { run: inNs, comments: ['test table'] });
    await applyTable(T, BODY, { run: inNs });
    assert.equal(await tableExists(T, inNs), true);
    const tables = sh('nft', 'list', 'tables');
    assert.equal(tables.match(/^table inet edgeward_test$/gm)?.length, 1, tables);
    assert.equal(sh('nft', 'list', 'table', 'inet', 'other'), pristine.slice(pristine.indexOf('table inet other')));
    assert.equal(sh('nft', 'list', 'chain', 'inet', 'edgeward_test', 'output').match(/counter/g)?.length, 2);
  });

  it('counters count real packets: 3 SYNs to a closed port', async () => {
    for (let i = 0; i < 3; i++) sh(process.execPath, '-e', "require('net').connect(9, '127.0.0.1').on('error', () => {})");
    const c = await listCounters(T, inNs);
    assert.ok(c);
    assert.deepEqual(c.named.map((x) => [x.name, x.packets, x.comment]), [['syn_to_9', 3, 'SYNs to port 9']]);
    assert.deepEqual(c.rules.map((x) => [x.chain, x.packets, x.comment]), [['output', 3, 'syn rule']]);
  });

  it('the netlink reader sees the named counters nft sees, over a dump of many parts', async () => {
    // 400 more counters in a table of their own: the dump takes several reads
    const many = Array.from({ length: 400 }, (_, i) => `\tcounter c${i} {\n\t\tpackets ${i * 3} bytes ${i * 100}\n\t}`);
    await applyTable({ family: 'inet', name: 'edgeward_many' }, many, { run: inNs });
    const readIn = (table: string): Array<{ name: string; packets: number; bytes: number }> => {
      const script = `import { NftCounterReader } from ${JSON.stringify(join(ROOT, 'src/kernel/nft-counters.ts'))};\nconst r = new NftCounterReader({ family: 'inet', name: ${JSON.stringify(table)} });\nprocess.stdout.write(JSON.stringify(r.read()));`;
      return JSON.parse(sh(process.execPath, '--import', 'tsx', '--input-type=module', '-e', script));
    };
    const viaNft = await listCounters(T, inNs);
    assert.deepEqual(readIn('edgeward_test').map((c) => [c.name, c.packets, c.bytes]), viaNft!.named.map((c) => [c.name, c.packets, c.bytes]));
    const all = readIn('edgeward_many');
    assert.equal(all.length, 400);
    assert.deepEqual(all.find((c) => c.name === 'c399'), { name: 'c399', packets: 1197, bytes: 39900 });
    assert.deepEqual(readIn('no_such_table'), [], 'a missing table has no counters');
    await removeTable({ family: 'inet', name: 'edgeward_many' }, inNs);
  });

  it('a reload that fails leaves the previous rules in force (one transaction)', async () => {
    const before = sh('nft', 'list', 'table', 'inet', 'edgeward_test');
    // refused by nft's parser
    await assert.rejects(applyTable(T, [...BODY.slice(0, -1), '\t\ttcp dport 10 no_such_statement', '\t}'], { run: inNs }), (e: unknown) => e instanceof NftError && e.code === 'nft_failed');
    assert.equal(sh('nft', 'list', 'table', 'inet', 'edgeward_test'), before);
    // accepted by the parser, refused by the kernel (tproxy outside prerouting) after the delete of the same transaction
    const tproxyInOutput = [...BODY.slice(0, -1), '\t\tmeta nfproto ipv4 meta l4proto tcp tproxy ip to :1', '\t}'];
    await assert.rejects(applyTable(T, tproxyInOutput, { run: inNs }), (e: unknown) => e instanceof NftError && e.code === 'kernel_unsupported' && /Operation not supported/.test(e.message));
    assert.equal(sh('nft', 'list', 'table', 'inet', 'edgeward_test'), before);
  });

  it('without privilege: a permission error, and nothing changes', async () => {
    const nobody: CommandRunner = (argv, input) => defaultRunner(['ip', 'netns', 'exec', ns, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...argv], input);
    const before = sh('nft', 'list', 'ruleset');
    await assert.rejects(applyTable(T, [], { run: nobody }), (e: unknown) => e instanceof NftError && e.code === 'permission' && /root \(CAP_NET_ADMIN\)/.test(e.message));
    assert.equal(sh('nft', 'list', 'ruleset'), before);
  });

  it('remove restores the ruleset exactly; remove again is a no-op', async () => {
    assert.equal(await removeTable(T, inNs), true);
    assert.equal(sh('nft', 'list', 'ruleset'), pristine);
    assert.equal(await removeTable(T, inNs), false);
    assert.equal(await listCounters(T, inNs), null);
    assert.equal(sh('nft', 'list', 'ruleset'), pristine);
  });
});
