// kernel/nft.ts without the kernel: the scripts it loads, the errors an operator sees, and the
// counters it reads back, with a stand-in for the nft command.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandRunner, RunResult } from '../../src/kernel/command.js';
import { applyTable, listCounters, NftError, removeTable, renderTableRemoval, renderTableScript, tableExists, type NftTable } from '../../src/kernel/nft.js';

const T: NftTable = { family: 'inet', name: 'edgeward_test' };
const ok = (stdout = ''): RunResult => ({ code: 0, stdout, stderr: '' });
const fail = (stderr: string, code: number | null = 1, error?: string): RunResult => ({ code, stdout: '', stderr, ...(error ? { error } : {}) });
const ABSENT = fail('Error: No such file or directory\nlist table inet edgeward_test\n                         ^^^^');

/** A runner that answers from `replies` in order and records what it was asked. */
function fake(...replies: RunResult[]): CommandRunner & { calls: Array<{ argv: string[]; input?: string }> } {
  const calls: Array<{ argv: string[]; input?: string }> = [];
  const run = (async (argv: readonly string[], input?: string) => {
    calls.push({ argv: [...argv], ...(input === undefined ? {} : { input }) });
    const r = replies.shift();
    assert.ok(r, `unexpected command: ${argv.join(' ')}`);
    return r;
  }) as CommandRunner & { calls: typeof calls };
  run.calls = calls;
  return run;
}

async function rejectsWith(p: Promise<unknown>, code: string, text: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof NftError && e.code === code && text.test(e.message));
}

describe('the owned-table script', () => {
  it('replaces only its own table, in one transaction: declare, delete, define', () => {
    const s = renderTableScript(T, ['\tcounter syn {', '\t}'], ['what it is']);
    assert.equal(s, '# what it is\ntable inet edgeward_test {}\ndelete table inet edgeward_test\ntable inet edgeward_test {\n\tcounter syn {\n\t}\n}\n');
    assert.equal(renderTableRemoval(T), 'table inet edgeward_test {}\ndelete table inet edgeward_test\n');
  });

  it('refuses a body that would close the table and reach other tables', () => {
    assert.throws(() => renderTableScript(T, ['}', 'flush ruleset', 'table inet x {']), (e: unknown) => e instanceof NftError && e.code === 'invalid_body');
    assert.throws(() => renderTableScript(T, ['chain c {']), (e: unknown) => e instanceof NftError && e.code === 'invalid_body');
    // braces inside quotes and comments do not count
    assert.doesNotThrow(() => renderTableScript(T, ['chain c { accept comment "} {" # }', '}']));
  });

  it('refuses a family or a name nft would not take', () => {
    assert.throws(() => renderTableScript({ family: 'inet', name: 'a b' }, []), (e: unknown) => e instanceof NftError && e.code === 'invalid_table');
    assert.throws(() => renderTableRemoval({ family: 'ipx' as NftTable['family'], name: 'a' }), (e: unknown) => e instanceof NftError && e.code === 'invalid_table');
  });
});

describe('applyTable, removeTable, tableExists', () => {
  it('apply pipes the script to `nft -f -`', async () => {
    const run = fake(ok());
    await applyTable(T, ['\tcounter c {', '\t}'], { run });
    assert.deepEqual(run.calls[0]!.argv, ['nft', '-f', '-']);
    assert.equal(run.calls[0]!.input, renderTableScript(T, ['\tcounter c {', '\t}']));
  });

  it('remove is a no-op when the table is absent, and deletes it in one transaction when present', async () => {
    const absent = fake(ABSENT);
    assert.equal(await removeTable(T, absent), false);
    assert.equal(absent.calls.length, 1);
    const present = fake(ok('table inet edgeward_test {\n}\n'), ok());
    assert.equal(await removeTable(T, present), true);
    assert.deepEqual(present.calls[1], { argv: ['nft', '-f', '-'], input: renderTableRemoval(T) });
  });

  it('exists: true, false, or an error that says why it cannot tell', async () => {
    assert.equal(await tableExists(T, fake(ok())), true);
    assert.equal(await tableExists(T, fake(ABSENT)), false);
    await rejectsWith(tableExists(T, fake(fail('Error: Could not process rule: Operation not permitted'))), 'permission', /needs root \(CAP_NET_ADMIN\)/);
  });

  it('errors say what to do, with a stable code', async () => {
    await rejectsWith(applyTable(T, [], { run: fake(fail('spawn nft ENOENT', null, 'ENOENT')) }), 'nft_missing', /install nftables/);
    await rejectsWith(applyTable(T, [], { run: fake(fail('', null, 'ETIMEDOUT')) }), 'timeout', /nft -f -: did not finish in time/);
    await rejectsWith(applyTable(T, [], { run: fake(fail('Error: Could not process rule: No such file or directory')) }), 'kernel_unsupported', /kernel refused the ruleset/);
    await rejectsWith(applyTable(T, [], { run: fake(fail('/dev/stdin:3:1: Error: syntax error, unexpected junk')) }), 'nft_failed', /nft -f -: .*syntax error/);
  });
});

describe('listCounters', () => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'inet', name: 'edgeward_test', handle: 1 } },
      { counter: { family: 'inet', name: 'syn', table: 'edgeward_test', handle: 2, comment: 'SYNs seen', packets: 7, bytes: 420 } },
      { chain: { family: 'inet', table: 'edgeward_test', name: 'input', handle: 1 } },
      { rule: { family: 'inet', table: 'edgeward_test', chain: 'input', handle: 4, comment: 'flag filter', expr: [{ match: {} }, { counter: { packets: 3, bytes: 180 } }, { drop: null }] } },
      { rule: { family: 'inet', table: 'edgeward_test', chain: 'input', handle: 5, expr: [{ counter: 'syn' }] } },
    ],
  });

  it('reads named and rule counters in one snapshot, without set elements', async () => {
    const run = fake(ok(json));
    const c = await listCounters(T, run);
    assert.deepEqual(run.calls[0]!.argv, ['nft', '-j', '-t', 'list', 'table', 'inet', 'edgeward_test']);
    assert.deepEqual(c, {
      named: [{ name: 'syn', packets: 7, bytes: 420, comment: 'SYNs seen' }],
      rules: [{ chain: 'input', handle: 4, packets: 3, bytes: 180, comment: 'flag filter' }],
    });
  });

  it('null when the table is not loaded; an error for output that is not JSON', async () => {
    assert.equal(await listCounters(T, fake(ABSENT)), null);
    await rejectsWith(listCounters(T, fake(ok('garbage'))), 'nft_failed', /not JSON/);
  });
});
