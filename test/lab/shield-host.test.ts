// The shield in host mode (test/helpers/shield-lab.ts): the services listen in the shield namespace
// itself, on 10.250.0.1 (its lo), and edgeward protects them on the input hook.
//
//   SYN flood, random sources      the kernel's SYN cookies (set by the shield) answer; the legit
//                                  client is served; the event names the layer that saw it
//   flag attacks                   counted per class on the input side
//   slowloris on nginx (proxy)     TPROXY hands the connections to edgeward's proxy while nginx keeps
//                                  its port: the slow senders are closed, the legit client served
//   UDP flood, random sources      the global cap drops it; the legit client, allowlisted by hand,
//                                  passes the shield with every datagram and keeps >= 99 % end to end
//   stop                           ruleset, ip rules and tcp_syncookies as before
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startEdgeward } from '../helpers/edgeward.js';
import { withLab } from '../helpers/netns.js';
import { curlGets, nginxArgv, nginxConfig } from '../helpers/nginx.js';
import { sleep, waitFor } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';
import { buildShieldLab, counterDelta, hpingCount, hpingFlood, legitUdp, legitUnderSynFlood, startBackendServers, udpCounters } from '../helpers/shield-lab.js';

const skip = requirement(labSkipReason({ needs: ['hping3', 'nft', 'sysctl', 'nginx', 'slowhttptest', 'curl', 'timeout'] }) ?? edgewardSkipReason());

const PORTS = { tcp: 7001, banner: 7025, udp: 7053 };
const WEB = 80;

interface Attack {
  kind: string;
  endedAt: string | null;
  peakPps: number;
  packets: number;
  layers: Record<string, number>;
}


describe('the shield, host mode (lab)', { skip }, () => {
  it('meets a SYN flood with SYN cookies, counts flag attacks, proxies a local nginx against slowloris, and leaves no trace', { timeout: 180_000 }, () =>
    withLab(async (lab) => {
      const sl = await buildShieldLab(lab, { mode: 'host' });
      await startBackendServers(lab, sl, PORTS);
      const dir = lab.tempDir('nginx');
      const conf = join(dir, 'nginx.conf');
      writeFileSync(conf, nginxConfig(dir, { connections: 64, servers: `  server {\n    listen ${sl.backendAddr}:${WEB};\n    location / { return 200 "ok\\n"; }\n  }` }));
      lab.spawn(sl.shield, nginxArgv(conf, dir));
      await waitFor('nginx to listen', async () => (await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${WEB}/`, 1)).ok === 1, 10_000, 200);
      const before = {
        ruleset: (await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout,
        rules: (await lab.exec(sl.shield, ['ip', 'rule', 'list'])).stdout,
        syncookies: (await lab.exec(sl.shield, ['sysctl', '-n', 'net.ipv4.tcp_syncookies'])).stdout.trim(),
      };
      assert.equal(before.syncookies, '0', 'the lab starts without SYN cookies (an unprotected SYN flood hurts)');

      const ew = await startEdgeward(lab, sl.shield, {
        args: [
          '--shield-mode', 'host', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1,
          '--shield-service', `echo=tcp:${sl.backendAddr}:${PORTS.tcp},rate=500`,
          '--shield-service', `web=tcp:${sl.backendAddr}:${WEB},rate=10000,conns=10000,proxy`,
          '--shield-proxy-conns', '40', '--shield-min-rate', '256', '--shield-rate-grace', '2', '--shield-first-byte', '2',
          '--shield-attack-rate', '1000', '--shield-attack-quiet', '2',
        ],
      });
      const status = async (): Promise<{ flags: Record<string, number>; proxies: Array<{ closed: Record<string, number> }> }> => {
        const r = await ew.api('GET', '/api/v1/shield');
        assert.equal(r.status, 200, r.text);
        return r.body as never;
      };
      const events = async (kind: string): Promise<Attack[]> => ((await ew.api('GET', `/api/v1/shield/events?kind=${kind}`)).body as { events: Attack[] }).events;
      assert.equal((await lab.exec(sl.shield, ['sysctl', '-n', 'net.ipv4.tcp_syncookies'])).stdout.trim(), '1', 'host mode turns SYN cookies on');

      // flag attacks on the input side, each in its class
      for (const [cls, flags] of [['syn_fin', ['-S', '-F']], ['xmas', ['-F', '-P', '-U']]] as const) {
        const sent = await hpingCount(lab, sl.attacker, [...flags, '-p', String(PORTS.tcp), sl.backendAddr], 200);
        assert.equal((await status()).flags[cls], sent, `${cls}: counted as sent`);
      }

      // SYN flood from random sources at the echo service: the kernel's cookies answer it
      const { legit: under, sent } = await legitUnderSynFlood(lab, sl, sl.backendAddr, PORTS.tcp, 20);
      const syn = await waitFor('the SYN flood event to end', async () => (await events('syn_flood')).find((e) => e.endedAt !== null), 20_000, 250);
      process.stdout.write(`# host mode SYN flood: ${sent} SYNs sent; legit ${under.ok}/${under.attempts}, p50 ${under.p50Ms} ms, p99 ${under.p99Ms} ms, failures ${JSON.stringify(under.failures)}; event peak ${syn.peakPps}/s, ${syn.packets} packets, layers ${JSON.stringify(syn.layers)}\n`);
      assert.ok(under.ok >= under.attempts * 0.999, `the legit client is served under the SYN flood (>= 99.9 %): ${under.ok}/${under.attempts}`);
      assert.ok(syn.packets >= sent * 0.3, `the event saw the flood: ${syn.packets} of ${sent}`);

      // slowloris at nginx through the proxy (nginx keeps port 80; TPROXY hands the connections over)
      const loris = lab.spawn(sl.attacker, ['timeout', '-s', 'KILL', '25', 'slowhttptest', '-c', '300', '-H', '-i', '3', '-r', '100', '-t', 'GET', '-u', `http://${sl.backendAddr}:${WEB}/`, '-x', '24', '-p', '3', '-l', '20']);
      await sleep(5000);
      const served = (await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${WEB}/`, 40)).ok;
      const closed = (await status()).proxies[0]!.closed;
      await loris.stop('SIGKILL');
      process.stdout.write(`# host mode slowloris through the proxy: legit ${served}/40; closed ${JSON.stringify(Object.fromEntries(Object.entries(closed).filter(([, n]) => n > 0)))}\n`);
      assert.ok(served >= 38, `the legit client is served: ${served}/40`);
      assert.ok(closed.slow_send! > 0, 'the proxy closed slow senders');

      assert.equal((await ew.stop()).code, 0, 'edgeward stopped cleanly');

      // UDP flood from random sources: the per-source meters cannot pin it on a source, the global cap
      // (the last resort, 2000/s here: what the lab's UDP server keeps up with) drops it; the legit
      // client, on the allowlist by hand, passes before the cap
      const ew2 = await startEdgeward(lab, sl.shield, {
        args: ['--shield-mode', 'host', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1, '--shield-service', `game=udp:${sl.backendAddr}:${PORTS.udp},rate=1000`, '--shield-global-rate', '2000'],
      });
      const allowed = await ew2.api('POST', '/api/v1/shield/allowlist', { address: sl.addr.legit, ttl: 600, reason: 'lab' });
      assert.equal(allowed.status, 201, allowed.text);
      const udpBefore = { shield: await udpCounters(lab, sl.shield), legit: await udpCounters(lab, sl.legit) };
      const legitU = legitUdp(lab, sl.legit, sl.backendAddr, PORTS.udp, { pps: 100, seconds: 5 });
      await sleep(300);
      // hping3's full rate (85-165 kpps here, 40-80x the cap)
      const udpSent = await hpingFlood(lab, sl.attacker, ['--udp', '--flood', '--rand-source', '-p', String(PORTS.udp), sl.backendAddr], 4);
      const u = await legitU;
      const st = (await ew2.api('GET', '/api/v1/shield')).body as { blocked: { globalCap: number }; allowlisted: number };
      const capped = st.blocked.globalCap;
      const udpGrew = { shield: counterDelta(udpBefore.shield, await udpCounters(lab, sl.shield)), legit: counterDelta(udpBefore.legit, await udpCounters(lab, sl.legit)) };
      process.stdout.write(`# host mode UDP flood, random sources: ${udpSent} datagrams, ${capped} dropped by the global cap; allowlisted: ${st.allowlisted} packets passed the shield, legit ${u.received}/${u.sent} echoed, rtt p50 ${u.rttP50Ms} p99 ${u.rttP99Ms} ms\n`);
      // where lost datagrams went, if any: one long run is a stall (a starved server), many short a drop rate
      process.stdout.write(`#   legit lost in ${u.lostRuns} runs, longest ${JSON.stringify(u.longestLost)}; Udp counters grew: shield ${JSON.stringify(udpGrew.shield)}, legit ${JSON.stringify(udpGrew.legit)}\n`);
      // the shield's part: every datagram of the allowlisted client passed the packet layer ahead of
      // the global cap (the counter sees its datagrams only: the echoes leave by the output hook)
      assert.ok(st.allowlisted >= u.sent, `every datagram of the allowlisted client passed the shield: ${st.allowlisted} of ${u.sent}`);
      // end to end: the 358-365/500 of earlier full-suite runs were lost at the lab's UDP server, not
      // in the shield: with the kernel's default 208 KiB receive buffer its socket overflowed while
      // it waited for a CPU (the flood keeps both cores in softirq): 1287-1429 RcvbufErrors and
      // 498/500 in two full-rate runs, against 0 and 500/500 with the 4 MiB it has now
      assert.ok(u.ratio >= 0.99, `the allowlisted client keeps >= 99 %: ${u.received}/${u.sent} (server socket overflows: ${udpGrew.shield.RcvbufErrors ?? 0})`);
      assert.ok(capped >= udpSent * 0.5, `the global cap dropped most of the random-source flood: ${capped} of ${udpSent}`);

      assert.equal((await ew2.stop()).code, 0, 'edgeward stopped cleanly');
      assert.equal((await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout, before.ruleset, 'the ruleset is as before');
      assert.equal((await lab.exec(sl.shield, ['ip', 'rule', 'list'])).stdout, before.rules, 'the policy routing is as before');
      assert.equal((await lab.exec(sl.shield, ['sysctl', '-n', 'net.ipv4.tcp_syncookies'])).stdout.trim(), '0', 'tcp_syncookies is put back');
    }),
  );
});
