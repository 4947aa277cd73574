// The shield's attack detection: counter rates become one signal per kind of attack, an attack starts
// at its threshold, keeps its peak, packets and the peak of each layer, ranks its sampled sources,
// and ends only after the quiet time; /proc/net/stat/synproxy is summed over the CPUs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveSettings } from '../../src/gateway/settings.js';
import { resolveShield } from '../../src/shield/config.js';
import { AttackDetector, signals, type AttackKind, type Signal } from '../../src/shield/detector.js';
import { parseSynproxyStats } from '../../src/kernel/proc-stats.js';

const spec = resolveShield(resolveSettings({}, { shieldMode: 'host', shieldInterface: ['wan0'], shieldService: ['web=tcp:80,syn=synproxy', 'dns=tcp:53,syn=cookies', 'game=udp:9999'] } as never));

const quiet: Record<AttackKind, Signal> = { syn_flood: { pps: 0, layers: {} }, udp_flood: { pps: 0, layers: {} }, tcp_flags: { pps: 0, layers: {} } };
const syn = (pps: number): Record<AttackKind, Signal> => ({ ...quiet, syn_flood: { pps, layers: { svc_web_synproxy: pps } } });

describe('shield attack detection', () => {
  it('sums the counters of each kind: synproxy answers or cookie-defended passes for SYNs, flags apart, UDP apart', () => {
    const s = signals(spec, { svc_web_synproxy: 900, svc_dns_passed: 50, svc_web_passed: 7, blocked_meter_tcp: 40, blocked_meter_other: 300, svc_game_passed: 20, flags_syn_fin: 12, flags_xmas: 3 });
    assert.equal(s.syn_flood.pps, 990, 'web counts its synproxy answers (not its passes), dns its passes, plus the TCP blocklist');
    assert.deepEqual(s.syn_flood.layers, { blocked_meter_tcp: 40, svc_web_synproxy: 900, svc_dns_passed: 50 });
    assert.equal(s.udp_flood.pps, 320);
    assert.equal(s.tcp_flags.pps, 15);
  });

  it('starts at the threshold, keeps the peak and the packets, ends after the quiet time', () => {
    const d = new AttackDetector({ threshold: { syn_flood: 1000, udp_flood: 1000, tcp_flags: 100 }, quietMs: 3000 });
    assert.deepEqual(d.observe(0, 1, syn(999)), [], 'under the threshold nothing starts');
    const [start] = d.observe(1000, 1, syn(5000));
    assert.equal(start?.type, 'started');
    assert.equal(start.event.kind, 'syn_flood');
    assert.equal(start.event.endedAt, null);
    d.observe(2000, 1, syn(20_000));
    d.observe(3000, 1, syn(100));
    assert.equal(d.observe(4000, 1, syn(8000))[0]?.type, 'updated', 'a dip shorter than the quiet time does not end it');
    assert.equal(d.observe(5000, 1, syn(0))[0]?.type, 'updated');
    assert.equal(d.observe(7000, 2, syn(0))[0]?.type, 'updated', 'two seconds quiet of three');
    const [end] = d.observe(8000, 1, syn(0));
    assert.equal(end?.type, 'ended');
    assert.equal(end.event.endedAt, new Date(5000).toISOString(), 'it ended when it went quiet');
    assert.equal(end.event.peakPps, 20_000);
    assert.equal(end.event.packets, 5000 + 20_000 + 100 + 8000);
    assert.deepEqual(end.event.layers, { svc_web_synproxy: 20_000 });
    assert.deepEqual(d.current(), []);
    assert.equal(d.observe(9000, 1, syn(5000))[0]?.type, 'started', 'a new flood is a new event');
    assert.notEqual(d.current()[0], end.event);
  });

  it('ranks the sampled sources of the attacks on their protocol, bounded, and keeps the fullest sample size', () => {
    const d = new AttackDetector({ threshold: { syn_flood: 1, udp_flood: 1, tcp_flags: 1 }, quietMs: 0 });
    d.observe(0, 1, { ...syn(10), udp_flood: { pps: 10, layers: {} } });
    const sample = Array.from({ length: 4000 }, (_, i) => ({ address: `10.${i >> 8}.${i & 255}.1`, packets: i % 7 }));
    d.addSources('tcp', [...sample, { address: '192.0.2.66', packets: 500_000 }]);
    d.addSources('tcp', [{ address: '192.0.2.66', packets: 400_000 }, { address: '192.0.2.77', packets: 90_000 }]);
    const [tcp, udp] = [d.current().find((e) => e.kind === 'syn_flood')!, d.current().find((e) => e.kind === 'udp_flood')!];
    assert.deepEqual(tcp.topSources.slice(0, 2), [{ address: '192.0.2.66', packets: 500_000 }, { address: '192.0.2.77', packets: 90_000 }], 'a source keeps its highest count');
    assert.equal(tcp.topSources.length, 10);
    assert.equal(tcp.distinctSources, 4001);
    assert.deepEqual(udp.topSources, [], 'a TCP sample says nothing about a UDP flood');
    const ended = d.endAll(5000);
    assert.equal(ended.length, 2);
    assert.ok(ended.every((t) => t.type === 'ended' && t.event.endedAt === new Date(5000).toISOString()));
  });
});

describe('/proc/net/stat/synproxy', () => {
  it('sums the hex columns over the CPUs by their header names', () => {
    const text = 'entries\t\tsyn_received\tcookie_invalid\tcookie_valid\tcookie_retrans\tconn_reopened\n00000000\t0000000a\t00000001\t00000002\t00000000\t00000000\n00000000\t000000ff\t00000000\t00000003\t00000001\t00000000\n';
    assert.deepEqual(parseSynproxyStats(text), { synReceived: 265, cookieInvalid: 1, cookieValid: 5, cookieRetrans: 1, connReopened: 0 });
  });
  it('gives null for a file without rows, and skips cells that are not hex', () => {
    assert.equal(parseSynproxyStats('entries syn_received\n'), null);
    assert.deepEqual(parseSynproxyStats('syn_received cookie_valid\nzz 10\n'), { synReceived: 0, cookieInvalid: 0, cookieValid: 16, cookieRetrans: 0, connReopened: 0 });
  });
});
