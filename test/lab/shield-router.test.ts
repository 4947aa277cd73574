// The shield in router mode (test/helpers/shield-lab.ts: attacker and legit client on two WAN links
// of the shield namespace, the backend behind it), with edgeward started in the shield namespace:
//
//   flag attacks (hping3 -c N)        each class's counter equals the packets sent; legit unaffected
//   SYN flood, random sources         synproxy answers; most legit connections succeed (the backend
//                                     runs without SYN cookies: unprotected it serves 0 %, see
//                                     shield-baseline.test.ts)
//   UDP flood, one source             the source is on the blocklist within 1 s; a legit UDP client
//                                     at 100 datagrams/s gets >= 99 % answered
//   banner (server speaks first)      the first byte arrives as soon through the shield (speaks-first:
//                                     synproxy without timestamps) as without it
//   block by hand (CLI)               the source is cut off; the block survives a restart; unblock
//                                     lets it back; the management sources cannot be blocked
//   attack events                     each attack (flags, SYN flood, UDP flood) is an event with its
//                                     peak, packets and top sources, in the API, the CLI, the
//                                     server-sent event stream and a webhook (retried after a 503);
//                                     a flood halves the flooded services' per-source limits while
//                                     it lasts; events outlive a restart (the store)
//   stop                              the shield namespace's ruleset and sysctls are as before
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startEdgeward } from '../helpers/edgeward.js';
import { withLab } from '../helpers/netns.js';
import { sleep, waitFor } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';
import { fileURLToPath } from 'node:url';
import type { AttackEvent } from '../../src/shield/detector.js';
import { buildShieldLab, counterDelta, hpingCount, hpingFlood, legitBanner, legitTcp, legitUdp, legitUnderSynFlood, startBackendServers, tcpExtCounters } from '../helpers/shield-lab.js';

const WEBHOOK_SINK = fileURLToPath(new URL('./fixtures/webhook-sink.mjs', import.meta.url));
const WEBHOOK_PORT = 9099;
/** the API listens on every address of the shield namespace, so the attacker can reach it */
const API_PORT = 8080;
/** the shield's address on the attacker's link */
const SHIELD_WAN0 = '10.250.1.1';

const skip = requirement(labSkipReason({ needs: ['hping3', 'nft', 'sysctl'] }) ?? edgewardSkipReason());
if (skip) process.stdout.write(`# skipping the shield router lab: ${skip}\n`);

const PORTS = { tcp: 8080, banner: 2525, udp: 5353 };

interface Status {
  loaded: boolean;
  flags: Record<string, number>;
  blocked: { manual: number; meter: number; globalCap: number };
  services: Array<{ name: string; passed: number; overRate: number; overConns: number; synproxy: number }>;
  rates: Record<string, number> | null;
  attacks: Attack[];
  tightened: string[];
}

type Attack = AttackEvent;

const FLAG_ATTACKS: Array<[string, string[]]> = [
  ['syn_fin_ack', ['-S', '-F', '-A']],
  ['syn_fin', ['-S', '-F']],
  ['syn_rst', ['-S', '-R']],
  ['xmas', ['-F', '-P', '-U']],
  ['null', []],
  ['fin_no_ack', ['-F']],
];

describe('the shield, router mode (lab)', { skip }, () => {
  it('drops flag attacks by class, meets a SYN flood with synproxy, blocks a UDP flooder, adds no banner delay, and leaves no trace', { timeout: 240_000 }, () =>
    withLab(async (lab) => {
      // the backend comes without SYN cookies or remembered peers (buildShieldLab)
      const sl = await buildShieldLab(lab, { mode: 'router' });
      await startBackendServers(lab, sl, PORTS);
      const rulesetBefore = (await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout;
      const bannerBefore = await legitBanner(lab, sl.legit, sl.backendAddr, PORTS.banner, { count: 30, concurrency: 1 });

      // the webhook receiver answers the first alert with 503: the shield must try again
      const sink = lab.spawn(sl.shield, [process.execPath, WEBHOOK_SINK, '--host', '127.0.0.1', '--port', String(WEBHOOK_PORT), '--fail-first', '1']);
      await sink.waitForOutput(/^ready /m, 10_000);
      const ew = await startEdgeward(lab, sl.shield, {
        api: `0.0.0.0:${API_PORT}`,
        args: [
          '--shield-mode', 'router', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1,
          // the legit client's 200 connections fit in the burst even with the limit halved under attack
          '--shield-service', `web=tcp:${sl.backendAddr}:${PORTS.tcp},rate=500`,
          '--shield-service', `smtp=tcp:${sl.backendAddr}:${PORTS.banner},speaks-first`,
          '--shield-service', `game=udp:${sl.backendAddr}:${PORTS.udp},rate=1000`,
          '--shield-block-time', '30',
          '--shield-attack-rate', '1000', '--shield-attack-quiet', '2',
          '--shield-webhook', `http://127.0.0.1:${WEBHOOK_PORT}/hooks/edgeward`,
        ],
      });
      const sse = lab.spawn(sl.shield, ['curl', '-sSN', '--max-time', '200', '-K', ew.curlConfig(), `${ew.apiBase}/api/v1/shield/events/stream`]);
      await sse.waitForOutput(/^: edgeward shield events/m, 10_000);
      const events = async (kind: string): Promise<Attack[]> => {
        const r = await ew.api('GET', `/api/v1/shield/events?kind=${kind}`);
        assert.equal(r.status, 200, r.text);
        return (r.body as { events: Attack[] }).events;
      };
      const ended = (kind: string, after = 0): Promise<Attack> =>
        waitFor(`the ${kind} event to end`, async () => (await events(kind)).find((e) => e.id > after && e.endedAt !== null), 15_000, 250);
      const status = async (): Promise<Status> => {
        const r = await ew.api('GET', '/api/v1/shield');
        assert.equal(r.status, 200, r.text);
        return r.body as Status;
      };
      assert.equal((await status()).loaded, true);

      // flag attacks: each counted in its own class, exactly
      for (const [cls, flags] of FLAG_ATTACKS) {
        const sent = await hpingCount(lab, sl.attacker, [...flags, '-p', String(PORTS.tcp), sl.backendAddr], 300);
        const st = await status();
        process.stdout.write(`# ${cls}: ${sent} sent, ${st.flags[cls]} counted\n`);
        assert.equal(st.flags[cls], sent, `${cls}: the counter equals the packets hping3 sent`);
      }
      const total = Object.values((await status()).flags).reduce((a, b) => a + b, 0);
      assert.equal(total, 300 * FLAG_ATTACKS.length, 'no packet counted in two classes');
      const metrics = await ew.api('GET', '/metrics');
      assert.match(metrics.text, /^edgeward_shield_flag_drops_total\{class="syn_fin"\} 300$/m, 'Prometheus has the same counts');
      const calm = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 200, concurrency: 10 });
      process.stdout.write(`# legit after the flag attacks: ${calm.ok}/${calm.attempts}, p50 ${calm.p50Ms} ms, p99 ${calm.p99Ms} ms\n`);
      assert.equal(calm.ok, calm.attempts, JSON.stringify(calm.failures));
      const flagsEvent = await ended('tcp_flags');
      const flagPackets = (await events('tcp_flags')).reduce((a, e) => a + e.packets, 0);
      process.stdout.write(`# flags event: ${flagPackets} packets, peak ${flagsEvent.peakPps}/s, top sources ${JSON.stringify(flagsEvent.topSources.slice(0, 2))}\n`);
      assert.ok(flagPackets >= 1500 && flagPackets <= 1810, `the flag attacks' events count their packets: ${flagPackets} of 1800`);

      // SYN flood from random sources: synproxy answers it, the backend never sees it
      // not a reflector: what leaves wan0 (toward the attacker) is no more than what came in on it
      const ackHeld = async (): Promise<number> => Number(/packets (\d+)/.exec((await lab.exec(sl.shield, ['nft', 'list', 'counter', 'inet', 'edgeward_shield', 'synproxy_ack_held'])).stdout)?.[1] ?? NaN);
      const wan0 = async (): Promise<{ rx: number; tx: number }> => {
        const r = await lab.exec(sl.shield, ['cat', `/sys/class/net/${sl.ifname.wan0}/statistics/rx_packets`, `/sys/class/net/${sl.ifname.wan0}/statistics/tx_packets`]);
        const [rx, tx] = r.stdout.trim().split('\n').map(Number);
        return { rx: rx!, tx: tx! };
      };
      // The flood shares the machine's two cores with the shield and the legit client: in some
      // runs a request's SYN is lost twice to the softirq load and misses the 3 s deadline (CI:
      // 199/200 once). As the throughput labs keep the best of their rounds, a flood round that
      // misses the bound is run once more; a shield that drops legit connections misses both.
      const floodRound = async () => {
        const wan0Before = await wan0();
        const backendBefore = await tcpExtCounters(lab, sl.backend);
        const heldBefore = await ackHeld();
        const { legit: underFlood, sent: floodSent } = await legitUnderSynFlood(lab, sl, sl.backendAddr, PORTS.tcp, 25);
        const backendGrew = counterDelta(backendBefore, await tcpExtCounters(lab, sl.backend));
        const held = (await ackHeld()) - heldBefore;
        const afterFlood = await status();
        const web = afterFlood.services.find((s) => s.name === 'web')!;
        process.stdout.write(`# SYN flood: ${floodSent} SYNs sent; synproxy counted ${web.synproxy}; legit ${underFlood.ok}/${underFlood.attempts}, p50 ${underFlood.p50Ms} ms, p99 ${underFlood.p99Ms} ms; failures ${JSON.stringify(underFlood.failures)}\n`);
        const wan0After = await wan0();
        return { underFlood, floodSent, backendGrew, held, web, inbound: wan0After.rx - wan0Before.rx, outbound: wan0After.tx - wan0Before.tx };
      };
      let round = await floodRound();
      // the event of a round run again is its own: the first round's event ends (quiet time) first
      let firstEvent = 0;
      if (round.underFlood.ok < round.underFlood.attempts * 0.999) {
        firstEvent = (await ended('syn_flood')).id;
        round = await floodRound();
      }
      const { underFlood, floodSent, backendGrew, held, web, inbound, outbound } = round;
      process.stdout.write(`#   wan0 during the flood: ${inbound} packets in, ${outbound} out; synproxy's handshake ACKs held back ${held}, the backend's TSEcrRejected +${backendGrew.TSEcrRejected ?? 0}\n`);
      // synproxy's handshake ACK (a TSEcr the backend rejects) is held back for every legit
      // connection, and the backend never sees one (rules.ts, chain synproxied)
      assert.ok(held >= underFlood.ok, `synproxy's handshake ACK held back for each connection: ${held} for ${underFlood.ok}`);
      assert.equal(backendGrew.TSEcrRejected ?? 0, 0, 'the backend rejected no TSEcr');
      assert.ok(floodSent > 50_000, `the flood was a flood: ${floodSent} SYNs`);
      assert.ok(outbound <= inbound, `the shield sent no more toward the attacker than it got: ${outbound} out, ${inbound} in`);
      assert.ok(web.synproxy >= floodSent * 0.5, `synproxy met the flood: ${web.synproxy}`);
      // unprotected the backend serves 0 % under this flood (shield-baseline). The 159/200 and 189/200
      // (response timeouts) of earlier runs, and the p99 of 1.6 s, were synproxy's handshake ACK with
      // a bad TSEcr (rules.ts, chain synproxied); held back, 200/200 with p99 18-22 ms in three runs
      assert.ok(underFlood.ok >= underFlood.attempts * 0.999, `legit under the SYN flood: ${underFlood.ok}/${underFlood.attempts}`);
      // while it went on (the stream, pushed by the shield: a status request can take seconds on two
      // cores that hping3 and the softirqs of its flood fill)
      const streamedAttacks = (): Array<{ type: string; attack: Attack }> =>
        sse
          .stdout()
          .split('\n')
          .filter((l) => l.startsWith('data: {"type"'))
          .map((l) => JSON.parse(l.slice(6)) as { type: string; attack: Attack });
      const goingOn = (m: { type: string; attack: Attack }): boolean => (m.type === 'started' || m.type === 'updated') && m.attack.kind === 'syn_flood' && m.attack.endedAt === null && m.attack.tightened.length > 0;
      // the poll that sees the flood may run only after it (the flood starves the CPU): wait for the message
      const during = await waitFor('the stream to show the SYN flood going on', async () => streamedAttacks().find(goingOn), 15_000, 200).catch(() => undefined);
      assert.ok(during, `the stream showed the SYN flood going on; it streamed ${JSON.stringify(streamedAttacks().map((m) => [m.type, m.attack.kind, m.attack.endedAt, m.attack.tightened]))}`);
      assert.deepEqual(during.attack.tightened, ['web', 'smtp'], 'the TCP services ran with tightened limits while it lasted');
      const synEvent = await ended('syn_flood', firstEvent);
      process.stdout.write(`# SYN flood event: peak ${synEvent.peakPps}/s, ${synEvent.packets} packets, layers ${JSON.stringify(synEvent.layers)}, ${synEvent.distinctSources} distinct sources sampled, tightened ${synEvent.tightened.join(',')}\n`);
      assert.ok(synEvent.packets >= floodSent * 0.5 && synEvent.packets <= floodSent * 1.1, `the event counts the flood: ${synEvent.packets} of ${floodSent}`);
      assert.ok(synEvent.distinctSources > 1000, `random sources show as many distinct ones: ${synEvent.distinctSources}`);
      assert.deepEqual(synEvent.tightened, ['web', 'smtp']);
      // the limits are relaxed in the same poll that stores the end, after it (nft runs): a moment later
      const endSeen = Date.now();
      await waitFor('the limits back once the flood ended', async () => (await status()).tightened.length === 0, 5000, 100).catch(async () =>
        assert.deepEqual((await status()).tightened, [], 'the limits are back once the flood ended'),
      );
      process.stdout.write(`# limits back ${Date.now() - endSeen} ms after the stored end was seen\n`);
      const logs = (ew.process.stdout() + ew.process.stderr()).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const change = (msg: string): Record<string, unknown> | undefined => logs.find((l) => l.msg === msg && l.service === 'web');
      assert.deepEqual([change('shield: limits tightened')?.reason, change('shield: limits tightened')?.ratePerSource], ['syn_flood', '500 -> 250/s'], 'the log says what changed and why');
      assert.equal(change('shield: limits relaxed')?.ratePerSource, '250 -> 500/s');

      // UDP flood from one source: blocklisted within a second, the legit UDP client carries on
      const legitUdpRun = legitUdp(lab, sl.legit, sl.backendAddr, PORTS.udp, { pps: 100, seconds: 5 });
      await sleep(500);
      const t0 = Date.now();
      const udpFlood = hpingFlood(lab, sl.attacker, ['--udp', '--flood', '-p', String(PORTS.udp), sl.backendAddr], 3);
      const blockedAfterMs = await waitFor(
        'the flooding source on the blocklist',
        async () => (await lab.exec(sl.shield, ['nft', 'list', 'set', 'inet', 'edgeward_shield', 'block4'])).stdout.includes(sl.addr.attacker) && Date.now() - t0,
        3000,
        50,
      ).catch(() => -1);
      // the counters are read every second into rates: one poll later the blocklist's rate shows the flood
      await sleep(1200);
      const duringUdp = await status();
      const rates = duringUdp.rates;
      process.stdout.write(`#   rate of drops by the meters' blocklist during the flood: ${Math.round(rates?.blocked_meter_other ?? 0)}/s\n`);
      assert.ok((rates?.blocked_meter_other ?? 0) > 1000, `the status has the flood's rate: ${JSON.stringify(rates)}`);
      const udpSent = await udpFlood;
      const legitU = await legitUdpRun;
      const afterUdp = await status();
      process.stdout.write(`# UDP flood: ${udpSent} datagrams; attacker blocklisted after ${blockedAfterMs} ms (from the flood's start, incl. hping3's start); blocked_meter ${afterUdp.blocked.meter}; legit UDP ${legitU.received}/${legitU.sent}\n`);
      assert.ok(blockedAfterMs >= 0 && blockedAfterMs < 1000, `the flooding source was blocklisted within 1 s (${blockedAfterMs} ms)`);
      assert.ok(afterUdp.blocked.meter > udpSent * 0.5, `the blocklist dropped the flood: ${afterUdp.blocked.meter} of ${udpSent}`);
      assert.ok(legitU.received >= legitU.sent * 0.99, `legit UDP: ${legitU.received}/${legitU.sent}`);
      const udpEvent = await ended('udp_flood');
      process.stdout.write(`# UDP flood event: peak ${udpEvent.peakPps}/s, ${udpEvent.packets} packets, top sources ${JSON.stringify(udpEvent.topSources.slice(0, 3))}\n`);
      assert.equal(udpEvent.topSources[0]?.address, sl.addr.attacker, 'the flooder is the top source');
      assert.ok(udpEvent.topSources[0]!.packets > udpSent * 0.3, `its sampled packets: ${udpEvent.topSources[0]!.packets} of ${udpSent}`);

      // the alerts went out: the webhook got started and ended of each flood (the first try answered
      // 503 and was sent again), the event stream had them as they happened. The webhook is posted
      // after the event is stored, so the last one may still be on its way when the store has it.
      await waitFor('the webhook to receive the UDP flood\'s end', async () => /^hook .*"type":"attack\.ended".*"kind":"udp_flood"/m.test(sink.stdout()), 5000, 100).catch(() => undefined);
      const hooks = sink
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('hook '))
        .map((l) => JSON.parse(l.slice(5)) as { n: number; status: number; contentType: string; body: { type: string; attack: Attack } });
      process.stdout.write(`# webhook: ${hooks.map((h) => `${h.status} ${h.body.type} ${h.body.attack.kind}`).join('; ')}\n`);
      assert.deepEqual([hooks[0]?.status, hooks[1]?.status], [503, 204]);
      assert.deepEqual(hooks[1]?.body, hooks[0]?.body, 'the alert the receiver refused came again');
      assert.equal(hooks[0]?.contentType, 'application/json');
      const delivered = hooks.filter((h) => h.status === 204).map((h) => `${h.body.type} ${h.body.attack.kind}`);
      for (const want of ['attack.started tcp_flags', 'attack.ended tcp_flags', 'attack.started syn_flood', 'attack.ended syn_flood', 'attack.started udp_flood', 'attack.ended udp_flood']) assert.ok(delivered.includes(want), `webhook: ${want} (got ${delivered.join(', ')})`);
      const streamed = sse.stdout();
      assert.match(streamed, /^event: attack\ndata: \{"type":"started","attack":\{"id":\d+,"kind":"syn_flood"/m, 'the event stream had the SYN flood as it started');
      assert.match(streamed, /^event: attack\ndata: \{"type":"ended","attack":\{"id":\d+,"kind":"udp_flood"/m);
      assert.match(streamed, /^event: rates\ndata: \{"at":/m);
      const metricsAfter = (await ew.api('GET', '/metrics')).text;
      assert.match(metricsAfter, new RegExp(`^edgeward_shield_attacks_total\\{kind="syn_flood"\\} ${firstEvent > 0 ? 2 : 1}$`, 'm'), metricsAfter.split('\n').filter((l) => l.includes('attack')).join('\n'));
      const unauth = await lab.exec(sl.shield, ['curl', '-sS', '--max-time', '3', '-o', '/dev/null', '-w', '%{http_code}', `${ew.apiBase}/api/v1/shield/events/stream`]);
      assert.equal(unauth.stdout, '401', 'the stream needs the token');

      // the server speaks first: no added delay through synproxy (no timestamps for this service)
      const bannerShield = await legitBanner(lab, sl.legit, sl.backendAddr, PORTS.banner, { count: 30, concurrency: 1 });
      process.stdout.write(`# banner: p50 ${bannerBefore.p50Ms} / p99 ${bannerBefore.p99Ms} ms without the shield, ${bannerShield.p50Ms} / ${bannerShield.p99Ms} ms through it\n`);
      assert.equal(bannerShield.ok, bannerShield.attempts);
      assert.ok((bannerShield.p99Ms ?? Infinity) < (bannerBefore.p99Ms ?? 0) + 50, 'the banner arrives within a few ms of the unshielded time');

      // an operator blocks the legit client by hand (CLI), it is cut off; the block survives a restart
      // of the gateway (the store); unblocking lets it back in
      const block = await ew.cli(['shield', 'block', sl.addr.legit, '--ttl', '600', '--reason', 'lab']);
      assert.equal(block.code, 0, block.stderr);
      assert.match(block.stdout, new RegExp(`blocked ${sl.addr.legit.replace(/\./g, '\\.')}/32 for 600 s`));
      const cut = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 5, concurrency: 5, deadlineMs: 1000 });
      assert.equal(cut.ok, 0, 'a blocked source gets nothing through');
      const listed = await ew.cli(['shield', 'blocklist']);
      assert.match(listed.stdout, new RegExp(`${sl.addr.legit.replace(/\./g, '\\.')}/32\\s+manual\\s+\\d+s\\s+lab`), listed.stdout);
      assert.match(listed.stdout, new RegExp(`${sl.addr.attacker.replace(/\./g, '\\.')}/32\\s+meter`), 'the UDP flooder is on the list, put there by the meter');
      // the management API (listening on every address here) stays reachable from a source a meter blocked
      const health = await lab.exec(sl.attacker, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', `http://${SHIELD_WAN0}:${API_PORT}/health`], { allowFailure: true });
      assert.equal(health.stdout, '200', 'the API answers the meter-blocked source');
      const cutTcp = await lab.exec(sl.attacker, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://${sl.backendAddr}:${PORTS.tcp}/`], { allowFailure: true });
      assert.equal(cutTcp.stdout, '000', 'while its connections to the protected services are dropped');
      const meterEntry = ((await ew.api('GET', '/api/v1/shield/blocklist')).body as { entries: Array<{ address: string; source: string; secondsLeft: number | null }> }).entries.find((e) => e.source === 'meter');
      assert.ok(meterEntry && meterEntry.secondsLeft !== null && meterEntry.secondsLeft > 0 && meterEntry.secondsLeft <= 30, `a meter's entry expires within --shield-block-time 30: ${JSON.stringify(meterEntry)}`);
      const mgmt = await ew.api('POST', '/api/v1/shield/blocklist', { address: 'not-an-address' });
      assert.deepEqual([mgmt.status, (mgmt.body as { error: { code: string } }).error.code], [400, 'invalid_address'], mgmt.text);
      await ew.stop();
      const ew2 = await startEdgeward(lab, sl.shield, { data: ew.data, args: ['--shield-mode', 'router', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1, '--shield-service', `web=tcp:${sl.backendAddr}:${PORTS.tcp}`, '--shield-management', `${sl.addr.attacker}/32`] });
      const stillCut = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 5, concurrency: 5, deadlineMs: 1000 });
      assert.equal(stillCut.ok, 0, 'the hand-made block is back after the restart');
      const kept = await ew2.cli(['shield', 'events']);
      assert.match(kept.stdout, new RegExp(`^\\s*${synEvent.id}\\s+syn_flood\\s+\\S+ \\S+\\s+\\S+ \\S+\\s+${synEvent.peakPps}\\s`, 'm'), `the events outlive the restart:\n${kept.stdout}`);
      const refused = await ew2.cli(['shield', 'block', sl.addr.attacker]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /overlaps the management sources/);
      const unblock = await ew2.cli(['shield', 'unblock', sl.addr.legit]);
      assert.equal(unblock.code, 0, unblock.stderr);
      const back = await legitTcp(lab, sl.legit, sl.backendAddr, PORTS.tcp, { count: 20, concurrency: 5 });
      assert.equal(back.ok, back.attempts, `unblocked: the legit client is served again; failures ${JSON.stringify(back.failures)}`);
      const again = await ew2.cli(['shield', 'unblock', sl.addr.legit]);
      assert.equal(again.code, 1, 'unblocking what is not blocked is an error (404)');
      assert.match(again.stderr, /is not on the blocklist/, again.stderr);
      const st = await ew2.cli(['shield', 'status']);
      assert.match(st.stdout, /table\s+inet edgeward_shield: loaded/);
      assert.match(st.stdout, /web\s+tcp\s+10\.250\.3\.2\s+8080\s+\d+/);

      const loose = (await lab.exec(sl.shield, ['sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_loose'])).stdout.trim();
      assert.equal(loose, '0', 'synproxy runs with strict TCP tracking');
      await ew2.stop();
      const rulesetAfter = (await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout;
      assert.equal(rulesetAfter, rulesetBefore, 'the ruleset is as before the shield');
      assert.equal((await lab.exec(sl.shield, ['sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_loose'])).stdout.trim(), '1', 'the sysctl is back');
    }),
  );
});
