// kernel/sysctl.ts without privilege: reading /proc/sys, the errors a write gives, and what a dial
// gets when another thread holds the MPTCP sysctl lock too long (the socket is still opened, and the
// connection record says why its scheduler/path manager was not applied). The lock across real
// worker threads: test/integration/mptcp-sysctl-race.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MPTCP_SYSCTL_LOCK_TIMEOUT_MS, mptcpSysctlLock, readSysctl, SysctlError, useMptcpSysctlLock, withMptcpSysctls, writeSysctl } from '../../src/kernel/sysctl.js';

describe('readSysctl / writeSysctl', () => {
  it('reads a sysctl by dotted name or path; null for one the kernel lacks or a name that is none', () => {
    assert.equal(readSysctl('kernel.ostype'), 'Linux');
    assert.equal(readSysctl('kernel/ostype'), 'Linux');
    assert.equal(readSysctl('net.no_such.sysctl'), null);
    assert.equal(readSysctl('../../etc/passwd'), null);
    assert.equal(readSysctl('kernel//ostype'), null);
  });

  it('a write that cannot happen throws a SysctlError with a stable code', () => {
    assert.throws(() => writeSysctl('../x', '1'), (e: unknown) => e instanceof SysctlError && e.code === 'invalid_name');
    assert.throws(() => writeSysctl('net.no_such.sysctl', '1'), (e: unknown) => e instanceof SysctlError && e.code === 'not_found' && /net\.no_such\.sysctl/.test(e.message));
  });
});

describe('the MPTCP sysctl lock', () => {
  it('is one process-wide buffer, and a worker adopts it by buffer', () => {
    const sab = mptcpSysctlLock();
    assert.ok(sab instanceof SharedArrayBuffer);
    assert.equal(mptcpSysctlLock(), sab);
    useMptcpSysctlLock(sab);
    assert.equal(mptcpSysctlLock(), sab);
    assert.throws(() => useMptcpSysctlLock(new SharedArrayBuffer(2)), TypeError);
  });

  it('held by another thread past the bound: the socket is opened unchanged and the record says why', () => {
    const cell = new Int32Array(mptcpSysctlLock());
    Atomics.store(cell, 0, 42 + 1); // as thread 42 would hold it
    try {
      const started = performance.now();
      let created = 0;
      const r = withMptcpSysctls({ scheduler: 'default', pathManager: 'kernel' }, () => ++created);
      const waited = performance.now() - started;
      assert.equal(r.result, 1);
      assert.ok(waited >= MPTCP_SYSCTL_LOCK_TIMEOUT_MS - 5 && waited < MPTCP_SYSCTL_LOCK_TIMEOUT_MS + 1000, `waited ${waited} ms`);
      assert.deepEqual(r.notApplied, [
        `scheduler default: thread 42 held the MPTCP sysctl lock for over ${MPTCP_SYSCTL_LOCK_TIMEOUT_MS} ms`,
        `pathManager kernel: thread 42 held the MPTCP sysctl lock for over ${MPTCP_SYSCTL_LOCK_TIMEOUT_MS} ms`,
      ]);
    } finally {
      Atomics.store(cell, 0, 0);
    }
  });

  it('free: the section runs at once, and a nested section of the same thread does not wait for itself', () => {
    const started = performance.now();
    const r = withMptcpSysctls({}, () => withMptcpSysctls({}, () => 'inner').result);
    assert.equal(r.result, 'inner');
    assert.deepEqual(r.notApplied, []);
    assert.ok(performance.now() - started < 100);
  });
});
