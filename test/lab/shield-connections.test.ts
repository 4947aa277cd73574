// The shield against real connections from one source, router mode (test/helpers/shield-lab.ts):
//
//   connection flood, held          without the shield the backend holds all 300 of the attacker's
//                                   connections; with it (conns=100) at most 100 reach the backend,
//                                   while the legit client makes 1000 connections, 10 at a time,
//                                   3 s deadline each, and gets >= 99.9 %
//   zero-window readers             50 clients with a 1 KiB receive buffer ask the proxied service
//                                   for 8 MiB and never read: the proxy closes each within the
//                                   configured 2 s (+1.5 s), the backend's send queues drain
//   connection churn                connect after connect, faster than the service's rate: the source
//                                   goes on the blocklist; the legit client's 1000 get >= 99.9 %
//                                   and it is never blocklisted
//   stop                            the shield namespace's ruleset is as before
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { startEdgeward } from '../helpers/edgeward.js';
import { withLab, type Lab, type Netns } from '../helpers/netns.js';
import { waitFor } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';
import { buildShieldLab, connectionFlood, legitBanner, legitTcp, startBackendServers } from '../helpers/shield-lab.js';

const ZERO_WINDOW_CLIENTS = fileURLToPath(new URL('../integration/fixtures/shield-proxy-zero-window.py', import.meta.url));

const skip = requirement(labSkipReason({ needs: ['nft', 'ss', 'python3'] }) ?? edgewardSkipReason());

const PORTS = { tcp: 7101, banner: 7125, udp: 7153, big: 7180 };
/** the web service's new connections per second per source (and its burst) */
const WEB_RATE = 4000;
/**
 * the web service's connections per source. Under the churn below adaptation halves it, and
 * conntrack counts a source's closing connections too (FIN_WAIT, CLOSE_WAIT, LAST_ACK): at 50
 * (25 tightened) the legit client's 10 in flight went over it now and then (995/1000, the 5 lost
 * exactly web's over_conns growth), so 100 (50 tightened)
 */
const CONNS = 100;
/** the attacker's held connections */
const HELD = 300;
/** the proxy's zero-window time, seconds */
const ZERO_WINDOW_S = 2;

interface ServiceView {
  name: string;
  passed: number;
  overRate: number;
  overConns: number;
}

/** Sockets in `ns` from local port `sport` (any state but LISTEN), with their summed Send-Q; only those toward `peer` if given. */
async function sockets(lab: Lab, ns: Netns, sport: number, peer?: string): Promise<{ count: number; sendQ: number }> {
  const r = await lab.exec(ns, ['ss', '-tnH', 'state', 'all', `( sport = :${sport} )`]);
  // columns: State Recv-Q Send-Q Local Peer
  const rows = r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length >= 5 && c[0] !== 'LISTEN' && (peer === undefined || c[4]!.startsWith(`${peer}:`)));
  return { count: rows.length, sendQ: rows.reduce((n, c) => n + Number(c[2]), 0) };
}

describe('the shield against connection floods and zero-window readers, router mode (lab)', { skip }, () => {
  it('holds the per-source connection limit, closes zero-window readers through the proxy, blocklists a connection churner, and the legit client keeps >= 99.9 % under the flood', { timeout: 180_000 }, () =>
    withLab(async (lab) => {
      const sl = await buildShieldLab(lab, { mode: 'router' });
      // a backend as servers are usually set up (backlog 1024; still no SYN cookies): what a flood of
      // held connections costs it is its connections, not its SYN queue
      await startBackendServers(lab, sl, PORTS, { backlog: 1024 });
      const rulesetBefore = (await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout;
      const fromAttacker = (): Promise<{ count: number; sendQ: number }> => sockets(lab, sl.backend, PORTS.tcp, sl.addr.attacker);

      // no shield: the backend holds every connection the attacker makes
      const bare = await connectionFlood(lab, sl.attacker, sl.backendAddr, PORTS.tcp, { count: HELD, concurrency: 100, seconds: 6 });
      const bareHeld = await fromAttacker();
      process.stdout.write(`# connection flood without the shield: the attacker connected ${bare.connected}/${HELD}, the backend holds ${bareHeld.count} of its connections\n`);
      assert.ok(bareHeld.count >= HELD * 0.95, `without the shield the flood reaches the backend: ${bareHeld.count} held of ${bare.connected} connected`);
      await bare.done;
      await waitFor('the attacker\'s connections to close', async () => (await fromAttacker()).count === 0, 10_000, 200);

      const ew = await startEdgeward(lab, sl.shield, {
        args: [
          '--shield-mode', 'router', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1,
          // rate: the legit client's 1000 fit in the burst even when a TCP flood halves it (--shield-adapt
          // tightens every TCP service; at rate=1000 the churn below got the legit client blocklisted
          // for the block time now and then: 30 s x 10 workers / 3 s deadline = exactly 100 lost)
          '--shield-service', `web=tcp:${sl.backendAddr}:${PORTS.tcp},rate=${WEB_RATE},conns=${CONNS}`,
          '--shield-service', `smtp=tcp:${sl.backendAddr}:${PORTS.banner},rate=200,speaks-first`,
          '--shield-service', `big=tcp:${sl.backendAddr}:${PORTS.big},rate=10000,conns=10000,proxy`,
          '--shield-zero-window', String(ZERO_WINDOW_S), '--shield-block-time', '30',
        ],
      });
      const service = async (name: string): Promise<ServiceView> => {
        const r = await ew.api('GET', '/api/v1/shield');
        assert.equal(r.status, 200, r.text);
        return (r.body as { services: ServiceView[] }).services.find((s) => s.name === name)!;
      };

      // the same flood with the shield, while the legit client makes its 1000 connections
      const flood = await connectionFlood(lab, sl.attacker, sl.backendAddr, PORTS.tcp, { count: HELD, concurrency: 100, seconds: 8 });
      const [held, legit] = await Promise.all([fromAttacker(), legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 1000, concurrency: 10, deadlineMs: 3000 })]);
      const web = await service('web');
      process.stdout.write(`# connection flood with the shield (conns=${CONNS}): the attacker's client saw ${flood.connected}/${HELD} connected (synproxy answers the handshake), the backend holds ${held.count}; over_conns ${web.overConns}\n`);
      process.stdout.write(`#   legit meanwhile: ${legit.ok}/${legit.attempts}, p50 ${legit.p50Ms} ms, p99 ${legit.p99Ms} ms, failures ${JSON.stringify(legit.failures)}\n`);
      assert.ok(held.count <= CONNS, `the per-source limit holds: ${held.count} of the attacker's connections reach the backend`);
      assert.ok(held.count >= CONNS * 0.9, `the flood got as far as the limit: ${held.count}`);
      assert.ok(web.overConns >= HELD - CONNS - 10, `the rest were dropped by the connection limit: ${web.overConns}`);
      // the few of 1000 lost through synproxy before (994/1000 once, p99 1.6 s) were synproxy's
      // handshake ACK with a bad TSEcr (rules.ts, chain synproxied): now 1000/1000, p99 18 ms
      assert.ok(legit.ok >= legit.attempts * 0.999, `legit under the connection flood: ${legit.ok}/${legit.attempts}`);
      await flood.done;

      // zero-window readers through the L4 proxy: closed in time, and the backend lets go of their answers
      const clients = lab.spawn(sl.attacker, ['python3', ZERO_WINDOW_CLIENTS, sl.addr.attacker, sl.backendAddr, String(PORTS.big), '50', '1024', '15']);
      await clients.waitForOutput(/^open 50$/m, 15_000);
      const stalled = await waitFor('the stalled answers to fill the backend\'s send queues', async () => {
        const q = await sockets(lab, sl.backend, PORTS.big);
        return q.sendQ > 10 * 1024 * 1024 ? q : undefined;
      }, 5000, 100).catch(() => sockets(lab, sl.backend, PORTS.big));
      process.stdout.write(`# zero window: while stalled the backend has ${stalled.count} sockets, Send-Q ${(stalled.sendQ / 1e6).toFixed(1)} MB toward the proxy\n`);
      assert.ok(stalled.sendQ > 10 * 1024 * 1024, 'the stalled answers fill the backend\'s send queues first');
      await clients.waitForOutput(/^done$/m, 20_000);
      const closes = [...clients.stdout().matchAll(/^closed (\d+) (\d+)$/gm)].map((m) => Number(m[2])).sort((a, b) => a - b);
      process.stdout.write(`#   ${closes.length}/50 closed, after ${closes[0]}..${closes[closes.length - 1]} ms (--shield-zero-window ${ZERO_WINDOW_S})\n`);
      assert.equal(closes.length, 50, 'every zero-window client was closed');
      assert.ok(closes[closes.length - 1]! <= ZERO_WINDOW_S * 1000 + 1500, `the last was closed after ${closes[closes.length - 1]} ms`);
      const drained = await waitFor('the backend\'s send queues to drain', async () => {
        const q = await sockets(lab, sl.backend, PORTS.big);
        return q.sendQ < 64 * 1024 ? q : undefined;
      }, 5000, 100);
      process.stdout.write(`#   afterwards the backend has ${drained.count} sockets, Send-Q ${drained.sendQ} bytes\n`);
      const proxy = ((await ew.api('GET', '/api/v1/shield')).body as { proxies: Array<{ name: string; closed: Record<string, number> }> }).proxies.find((p) => p.name === 'big')!;
      assert.equal(proxy.closed.zero_window, 50, `the proxy closed them as zero_window: ${JSON.stringify(proxy.closed)}`);

      // connection churn faster than smtp's rate (200/s): the source goes on the blocklist
      const churn = legitBanner(lab, sl.attacker, sl.backendAddr, PORTS.banner, { count: 100_000, concurrency: 100, deadlineMs: 1000, seconds: 4 });
      const blocked = await waitFor('the churning source on the blocklist', async () => (await lab.exec(sl.shield, ['nft', 'list', 'set', 'inet', 'edgeward_shield', 'block4'])).stdout.includes(sl.addr.attacker), 5000, 50).catch(() => false);
      const overConnsBefore = (await service('web')).overConns;
      const legit2 = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 1000, concurrency: 10, deadlineMs: 3000 });
      const churned = await churn;
      const smtp = await service('smtp');
      const state = (await ew.api('GET', '/api/v1/shield')).body as { tightened: string[] };
      const blockedNow = (await lab.exec(sl.shield, ['nft', 'list', 'set', 'inet', 'edgeward_shield', 'block4'])).stdout;
      process.stdout.write(`# connection churn: ${churned.attempts} connects in 4 s, ${churned.ok} got the banner, failures ${JSON.stringify(churned.failures)}; smtp over_rate ${smtp.overRate}\n`);
      process.stdout.write(`#   legit meanwhile: ${legit2.ok}/${legit2.attempts}, p50 ${legit2.p50Ms} ms, p99 ${legit2.p99Ms} ms, failures ${JSON.stringify(legit2.failures)}; tightened ${JSON.stringify(state.tightened)}, web over_rate ${(await service('web')).overRate}, over_conns +${(await service('web')).overConns - overConnsBefore}\n`);
      assert.ok(blocked, 'the churning source went on the blocklist');
      assert.ok(!blockedNow.includes(sl.addr.legit), `the legit client stayed off the blocklist: ${blockedNow}`);
      assert.ok(smtp.overRate >= 1, 'the rate meter caught it');
      assert.ok(churned.ok <= 200 + 4 * 200 + 100, `the churner got no more than the burst and the rate allow: ${churned.ok}`);
      // the legit client's second thousand, all through synproxy: 815 of 1000 without the short
      // TIME_WAIT of synproxied connections (rules.ts CLOSED_LINGER_S), 993-996 with it, 1000 since
      // synproxy's handshake ACK with a bad TSEcr is held back (rules.ts, chain synproxied)
      assert.ok(legit2.ok >= legit2.attempts * 0.999, `legit under the churn: ${legit2.ok}/${legit2.attempts}`);

      await ew.stop();
      assert.equal((await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout, rulesetBefore, 'the ruleset is as before');
    }),
  );
});
