// --busy-poll: after a batch of events, a relaying thread polls for the next ones without sleeping
// for at most the time set, and never while nothing happens. Seen from outside as the gateway's CPU
// time (/proc/PID/stat): one proxied connection (the npm `socks` client) with an echo round trip
// every 2 ms costs a large part of a core when each batch is followed by 1000 us of polling, almost
// nothing with 0, and once the traffic stops both gateways are back to almost nothing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { startEchoServer, type TcpPeer } from '../helpers/peers.js';
import { runCmd, sleep } from '../helpers/process.js';

/** clock ticks per second of /proc/PID/stat (USER_HZ: 100 on every Linux architecture Node runs on) */
const USER_HZ = 100;

/** user + system CPU seconds of a process so far */
function cpuSeconds(pid: number): number {
  // the command name (field 2) may hold spaces: count the fields after its closing parenthesis
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / USER_HZ;
}

/** cores the process used over `ms` while `during` runs (or sleeps) */
async function coresOver(pid: number, ms: number, during: () => Promise<void> = () => sleep(ms)): Promise<number> {
  const t0 = performance.now();
  const c0 = cpuSeconds(pid);
  await during();
  return (cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000);
}

async function socksTo(g: Gateway, port: number): Promise<net.Socket> {
  const { socket } = await SocksClient.createConnection({ proxy: { host: g.socksHost, port: g.socksPort, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port }, timeout: 10_000 });
  socket.on('error', () => undefined);
  return socket;
}

/** one byte there and back every 2 ms for `ms`; returns the round trips made */
async function sparseEchoes(s: net.Socket, ms: number): Promise<number> {
  const end = performance.now() + ms;
  let n = 0;
  while (performance.now() < end) {
    const back = new Promise<void>((resolve) => s.once('data', () => resolve()));
    s.write('x');
    await back;
    n++;
    await sleep(2);
  }
  return n;
}

describe('--busy-poll', () => {
  let echo: TcpPeer;
  let polling: Gateway;
  let sleeping: Gateway;

  before(async () => {
    echo = await startEchoServer();
    polling = await startGateway({ args: ['--busy-poll', '1000', '--workers', '2'] });
    sleeping = await startGateway({ args: ['--busy-poll', '0', '--workers', '2'] });
  });

  after(async () => {
    await polling?.stop();
    await sleeping?.stop();
    await echo?.close();
  });

  it('polls after activity in the relaying threads, bounded, and not at all once idle', async () => {
    const figures: Record<string, { trips: number; busy: number; idle: number }> = {};
    for (const [name, g] of [['1000 us', polling], ['0', sleeping]] as const) {
      const s = await socksTo(g, echo.port);
      await sparseEchoes(s, 300); // warm up
      let trips = 0;
      const busy = await coresOver(g.pid, 0, async () => {
        trips = await sparseEchoes(s, 3000);
      });
      s.destroy();
      await sleep(1500);
      const idle = await coresOver(g.pid, 2000);
      figures[name] = { trips, busy, idle };
    }
    const p = figures['1000 us']!;
    const z = figures['0']!;
    console.log(`--busy-poll 1000: ${p.trips} round trips in 3 s, ${p.busy.toFixed(3)} cores; --busy-poll 0: ${z.trips}, ${z.busy.toFixed(3)} cores; idle afterwards ${p.idle.toFixed(3)} / ${z.idle.toFixed(3)} cores`);
    assert.ok(p.trips > 300 && z.trips > 300, `the exchanges ran (${p.trips}, ${z.trips} round trips)`);
    // each round trip is followed by up to 1 ms of polling, ~2.5 ms apart: a third of a core or more; without, ~0.1
    assert.ok(p.busy > 2 * z.busy && p.busy - z.busy > 0.1, `polling shows in the CPU time: ${p.busy.toFixed(3)} cores against ${z.busy.toFixed(3)}`);
    assert.ok(p.busy < 0.85, `polling stops after 1000 us: ${p.busy.toFixed(3)} cores`);
    // (V8's collector may still run once in the window: a few hundredths; a poll that went on would be a whole core)
    assert.ok(p.idle < 0.1 && z.idle < 0.1, `idle gateways poll nothing: ${p.idle.toFixed(3)} / ${z.idle.toFixed(3)} cores`);
  });

  it('is refused out of range, naming the flag', async () => {
    const r = await runCmd([process.execPath, BIN, 'start', '--busy-poll', '1001', '--data', join(tmpdir(), 'edgeward-busy-poll-refused')], { timeoutMs: 15_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--busy-poll must be microseconds 0\.\.1000/);
  });
});
