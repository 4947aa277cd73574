// The shield lab's baseline (test/helpers/shield-lab.ts, router mode, no shield running): the attacks
// the shield will be measured against are real against an unprotected backend.
//
//   no attack                        legit TCP clients: >= 99.5 % answered
//   SYN flood, random sources        legit: < 50 % (the backend's SYN queue, backlog 16, is full)
//   SYN flood, backend syncookies=1  legit: >= 99 % (the "kernel alone" column)
//
// The flood is `hping3 --flood -S --rand-source` from the attacker namespace, always bounded by
// `timeout`; the legitimate client starts after half a second of it. The backend's TcpExt counters
// show that the flood reached its listener (SYN queue full: dropped, or answered with cookies).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withLab } from '../helpers/netns.js';
import { sleep } from '../helpers/process.js';
import { labSkipReason, requirement } from '../helpers/requirements.js';
import { buildShieldLab, flushTcpMetrics, hpingFlood, legitTcp, setSyncookies, startBackendServers, tcpExtCounters, type ShieldLab, type TcpLoadResult } from '../helpers/shield-lab.js';
import type { Lab } from '../helpers/netns.js';

const skip = requirement(labSkipReason({ needs: ['hping3', 'sysctl'] }));
if (skip) process.stdout.write(`# skipping the shield baseline lab: ${skip}\n`);

const PORTS = { tcp: 8080, banner: 2525, udp: 5353 };
/** legit during a flood: 60 connections, 10 at a time, 3 s each: at most 18 s when every one times out */
const UNDER_FLOOD = { count: 60, concurrency: 10, deadlineMs: 3000 };
/** the flood lasts at least this long, and at most FLOOD_MAX_S */
const FLOOD_MIN_MS = 3000;
const FLOOD_MAX_S = 25;

const pct = (r: TcpLoadResult): number => (100 * r.ok) / Math.max(1, r.attempts);

function describeLoad(r: TcpLoadResult): string {
  const failures = Object.entries(r.failures)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return `${r.ok}/${r.attempts} ok (${pct(r).toFixed(1)} %), p50 ${r.p50Ms ?? '-'} ms, p99 ${r.p99Ms ?? '-'} ms, max ${r.maxMs ?? '-'} ms${failures ? `; failures: ${failures}` : ''}`;
}

/** Floods the backend from the attacker and runs legit once the flood has run for 0.5 s; the flood stops when legit is done (but not before FLOOD_MIN_MS). */
async function legitUnderFlood(lab: Lab, sl: ShieldLab): Promise<{ legit: TcpLoadResult; sent: number; floodMs: number; counters: Record<string, number> }> {
  const before = await tcpExtCounters(lab, sl.backend);
  const stop = new AbortController();
  const started = Date.now();
  const flood = hpingFlood(lab, sl.attacker, ['--flood', '-S', '--rand-source', '-p', String(PORTS.tcp), sl.backendAddr], FLOOD_MAX_S, { signal: stop.signal });
  try {
    await sleep(500);
    const legit = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, UNDER_FLOOD);
    const left = FLOOD_MIN_MS - (Date.now() - started);
    if (left > 0) await sleep(left);
    stop.abort();
    const sent = await flood;
    const floodMs = Date.now() - started;
    const after = await tcpExtCounters(lab, sl.backend);
    const counters: Record<string, number> = {};
    for (const k of ['TCPReqQFullDrop', 'TCPReqQFullDoCookies', 'SyncookiesSent', 'SyncookiesRecv', 'ListenDrops', 'ListenOverflows']) counters[k] = (after[k] ?? 0) - (before[k] ?? 0);
    return { legit, sent, floodMs, counters };
  } finally {
    stop.abort();
    await flood.catch(() => undefined);
  }
}

function report(label: string, r: Awaited<ReturnType<typeof legitUnderFlood>>): void {
  const c = r.counters;
  process.stdout.write(`# ${label}: legit ${describeLoad(r.legit)}\n`);
  process.stdout.write(`#   flood: ${r.sent} SYNs in ${(r.floodMs / 1000).toFixed(1)} s (${Math.round(r.sent / (r.floodMs / 1000) / 1000)} kpps); backend TcpExt: ReqQFullDrop ${c.TCPReqQFullDrop}, ReqQFullDoCookies ${c.TCPReqQFullDoCookies}, SyncookiesSent ${c.SyncookiesSent}, SyncookiesRecv ${c.SyncookiesRecv}, ListenDrops ${c.ListenDrops}, ListenOverflows ${c.ListenOverflows}\n`);
}

describe('shield baseline: the attacks are real without a shield (lab, router mode)', { skip }, () => {
  it('no attack: legit TCP clients are answered (>= 99.5 %)', { timeout: 60_000 }, () =>
    withLab(async (lab) => {
      const sl = await buildShieldLab(lab, { mode: 'router' });
      await startBackendServers(lab, sl, PORTS);
      await flushTcpMetrics(lab, sl.backend);
      const r = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 200, concurrency: 10, deadlineMs: 3000 });
      process.stdout.write(`# no attack: legit ${describeLoad(r)}\n`);
      assert.equal(r.attempts, 200);
      assert.ok(pct(r) >= 99.5, `legit without an attack: ${describeLoad(r)}`);
      // the same over IPv6, so the lab's second family is known to work
      const r6 = await legitTcp(lab, sl.legit, sl.backendAddr6, PORTS.tcp, { count: 50, concurrency: 10, deadlineMs: 3000 });
      process.stdout.write(`# no attack, IPv6: legit ${describeLoad(r6)}\n`);
      assert.ok(pct(r6) >= 99.5, `legit over IPv6 without an attack: ${describeLoad(r6)}`);
    }),
  );

  it('SYN flood from random sources, no cookies: legit success drops (< 50 %)', { timeout: 90_000 }, () =>
    withLab(async (lab) => {
      const sl = await buildShieldLab(lab, { mode: 'router' });
      await startBackendServers(lab, sl, PORTS);
      await flushTcpMetrics(lab, sl.backend);
      const r = await legitUnderFlood(lab, sl);
      report('SYN flood, unprotected (syncookies=0)', r);
      assert.ok(r.sent > 100_000, `hping3 sent only ${r.sent} SYNs`);
      assert.ok(r.counters.TCPReqQFullDrop! > 10_000, `the flood filled the backend's SYN queue: TCPReqQFullDrop +${r.counters.TCPReqQFullDrop}`);
      assert.ok(pct(r.legit) < 50, `legit under an unprotected SYN flood: ${describeLoad(r.legit)}`);
    }),
  );

  it('SYN flood from random sources, backend syncookies=1 (kernel alone): legit >= 99 %', { timeout: 90_000 }, () =>
    withLab(async (lab) => {
      const sl = await buildShieldLab(lab, { mode: 'router' });
      await setSyncookies(lab, sl.backend, true);
      await startBackendServers(lab, sl, PORTS);
      await flushTcpMetrics(lab, sl.backend);
      const r = await legitUnderFlood(lab, sl);
      report('SYN flood, kernel alone (syncookies=1)', r);
      assert.ok(r.sent > 100_000, `hping3 sent only ${r.sent} SYNs`);
      assert.ok(r.counters.SyncookiesSent! > 10_000, `the backend answered the flood with cookies: SyncookiesSent +${r.counters.SyncookiesSent}`);
      assert.ok(pct(r.legit) >= 99, `legit under a SYN flood with kernel SYN cookies: ${describeLoad(r.legit)}`);
    }),
  );
});
