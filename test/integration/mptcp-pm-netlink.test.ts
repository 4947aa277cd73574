// kernel/netlink.ts and kernel/mptcp-pm.ts against this machine's kernel: the mptcp_pm family and
// its event group are found, a refused command comes back as the kernel's errno with its own
// words, and a route lookup with a 5-tuple answers like `ip route get`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MptcpPm } from '../../src/kernel/mptcp-pm.js';
import { NetlinkError } from '../../src/kernel/netlink.js';
import { RouteLookup } from '../../src/kernel/route-lookup.js';

describe('generic netlink and rtnetlink on this kernel', () => {
  it('finds the mptcp_pm family and its event group', () => {
    const pm = MptcpPm.open();
    try {
      assert.ok(pm.family.id > 0x10, `family id ${pm.family.id}`);
      assert.ok(pm.family.groups.has('mptcp_pm_events'), JSON.stringify([...pm.family.groups]));
      const events = pm.openEvents();
      events.close();
    } finally {
      pm.close();
    }
  });

  it('answers a command for a token that does not exist with EINVAL and the kernel\'s reason', () => {
    const pm = MptcpPm.open();
    try {
      assert.throws(
        () => pm.createSubflow(0x7fff_fff1, { ip: '127.0.0.1' }, { ip: '127.0.0.1', port: 9 }),
        (e: unknown) => e instanceof NetlinkError && e.code === 'EINVAL' && /invalid token/.test(e.message),
      );
    } finally {
      pm.close();
    }
  });

  it('looks up the route of a TCP 5-tuple: loopback goes out of lo', () => {
    const routes = new RouteLookup();
    try {
      const lo = routes.pathOf('127.0.0.1', '127.0.0.2', 40000, 80);
      assert.equal(lo, '1/', 'ifindex 1 (lo), no gateway');
      assert.equal(routes.pathOf('127.0.0.1', 'not an address', 1, 1), null);
    } finally {
      routes.close();
    }
  });
});
