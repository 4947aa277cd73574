// The shield's settings and the ruleset they give: each mistake is refused naming the flag and what
// was wrong, and the rules come in the order the kernel needs (management first, SYN+FIN+ACK before
// SYN+FIN, synproxy SYNs untracked before conntrack sees them).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULTS, readConfigFile, resolveSettings } from '../../src/gateway/settings.js';
import { resolveShield } from '../../src/shield/config.js';
import { renderShieldBody } from '../../src/shield/rules.js';

const settings = (flags: Record<string, unknown>) => resolveSettings({}, flags as never);

describe('shield settings', () => {
  it('parses services in both modes, IPv6 in brackets, port ranges and options', () => {
    const spec = resolveShield(settings({ shieldMode: 'router', shieldInterface: ['wan0'], shieldService: ['web=tcp:10.0.3.2:80,rate=50,conns=8', 'v6=tcp:[fd00::2]:8000-8010,speaks-first', 'game=udp:10.0.3.3:9999,rate=3000'] }));
    assert.deepEqual(
      spec.services.map((s) => [s.name, s.protocol, s.address, s.family, s.ports, s.rate, s.conns, s.syn, s.speaksFirst]),
      [
        ['web', 'tcp', '10.0.3.2', 4, [80, 80], 50, 8, 'synproxy', false],
        ['v6', 'tcp', 'fd00::2', 6, [8000, 8010], 100, 64, 'synproxy', true],
        ['game', 'udp', '10.0.3.3', 4, [9999, 9999], 3000, 64, 'synproxy', false],
      ],
    );
    const host = resolveShield(settings({ shieldService: ['ssh=tcp:22'] }));
    assert.equal(host.services[0]!.syn, 'cookies', 'host mode defaults to the kernel\'s SYN cookies');
    assert.equal(host.services[0]!.address, undefined);
  });

  it('refuses bad settings, naming the flag and the entry', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ shieldService: ['web=tcp:80'], shieldMode: 'router', shieldInterface: ['wan0'] }, /router mode needs the backend's address/],
      [{ shieldService: ['web=tcp:10.0.3.2:80'], shieldMode: 'router' }, /--shield-interface IFACE is required in router mode/],
      [{ shieldService: ['Web=tcp:80'] }, /the name "Web" must be/],
      [{ shieldService: ['web=sctp:80'] }, /expected NAME=tcp\|udp/],
      [{ shieldService: ['web=tcp:90-80'] }, /runs backwards/],
      [{ shieldService: ['web=tcp:70000'] }, /port: "70000" must be a whole number 1..65535/],
      [{ shieldService: ['web=tcp:80,rate=0'] }, /rate: "0"/],
      [{ shieldService: ['dns=udp:53,conns=5'] }, /a UDP service has rate only/],
      [{ shieldService: ['web=tcp:80,colour=red'] }, /unknown option "colour"/],
      [{ shieldService: ['web=tcp:80', 'web=tcp:81'] }, /"web" is used twice/],
      [{ shieldService: ['web=tcp:nowhere:80'] }, /"nowhere" is not an IP address/],
      [{ shieldService: ['web=tcp:80'], shieldManagement: ['10.0.0.0/33'] }, /--shield-management: "10.0.0.0\/33"/],
      [{ shieldService: ['web=tcp:10.0.3.2:80,syn=cookies'], shieldMode: 'router', shieldInterface: ['wan0'] }, /backend's cookies are the backend's/],
      [{ shieldInterface: ['wan0'] }, /--shield-interface needs --shield-service/],
    ];
    for (const [flags, re] of bad) assert.throws(() => settings(flags), re, JSON.stringify(flags));
  });

  it('reads the YAML section with short keys', () => {
    const file = join(tmpdir(), `shield-${process.pid}.yaml`);
    writeFileSync(file, 'shield:\n  mode: router\n  interface: [wan0]\n  management: [192.0.2.0/24]\n  service:\n    - web=tcp:10.0.3.2:80\n');
    const s = resolveSettings(readConfigFile(file), {});
    assert.deepEqual([s.shieldMode, s.shieldInterface, s.shieldService], ['router', ['wan0'], ['web=tcp:10.0.3.2:80']]);
    assert.deepEqual(DEFAULTS.shieldService, []);
  });

  it('renders the rules in the order the kernel needs', () => {
    const body = renderShieldBody(resolveShield(settings({ shieldMode: 'router', shieldInterface: ['wan0', 'wan1'], shieldManagement: ['192.0.2.0/24'], shieldService: ['web=tcp:10.0.3.2:80'] })));
    const at = (re: RegExp): number => body.findIndex((l) => re.test(l));
    assert.ok(at(/iifname \{ "wan0", "wan1" \} jump edge/) > 0);
    assert.ok(at(/hook forward/) > 0, 'router mode filters forwarded packets');
    assert.ok(at(/elements = \{ 192\.0\.2\.0\/24 \}/) > 0);
    assert.ok(at(/@management4 accept/) < at(/flags_syn_fin_ack drop/), 'management sources before any drop');
    assert.ok(at(/flags_syn_fin_ack drop/) < at(/counter name flags_syn_fin drop/), 'SYN+FIN+ACK before the broader SYN+FIN');
    assert.ok(at(/flags_xmas drop/) < at(/flags_fin_no_ack drop/), 'XMAS before FIN without ACK (XMAS has no ACK either)');
    assert.ok(at(/@allow4 counter name allowlisted return/) < at(/@block4 counter name blocked_meter_tcp drop/), 'the allowlist before the blocklist');
    assert.ok(at(/@block4 counter name blocked_meter_tcp drop/) < at(/@block4 counter name blocked_meter_other drop/), 'blocked TCP counted apart from the rest');
    assert.ok(at(/@management4 accept/) < at(/update @seen_tcp4/) && at(/update @seen_udp6/) < at(/@allow4 counter name allowlisted return/), 'the source sample sees every packet after the management sources');
    assert.ok(at(/tcp dport 80 tcp flags & \(syn\|ack\) == syn notrack/) > at(/jump edge/));
    assert.ok(at(/counter name svc_web_synproxy synproxy mss 1460 wscale 10 timestamp sack-perm$/) > 0, "the counter before synproxy, which takes the packet");
    // the connection count of a synproxy service meets the SYN synproxy sends the server (output),
    // which never passes forward: in the protect chain it would never match
    const chain = (name: string): string[] => body.slice(at(new RegExp(`^  chain ${name} \\{`)), body.indexOf('  }', at(new RegExp(`^  chain ${name} \\{`))));
    assert.equal(chain('protect').some((l) => /conns_web/.test(l)), false, 'no connection count in the forward path for synproxy');
    assert.match(chain('synproxied')[1]!, /type filter hook output priority filter/);
    assert.match(chain('synproxied')[2]!, /ip daddr 10\.0\.3\.2 tcp dport 80 tcp flags & \(syn\|ack\) == syn ct state new fib saddr type != local jump protect_synproxied/, 'only SYNs from other sources than this host');
    assert.deepEqual(chain('protect_synproxied').slice(-2), [
      '    ip daddr 10.0.3.2 tcp dport 80 add @conns_web_v4 { ip saddr ct count over 64 } counter name svc_web_over_conns drop',
      '    ip daddr 10.0.3.2 tcp dport 80 ct timeout set "synproxied_closed4" counter name svc_web_passed',
    ]);
    assert.ok(at(/ct timeout synproxied_closed4 \{ protocol tcp; l3proto ip; policy = \{ time_wait: 5, close: 5 \}; \}/) > 0, 'closed synproxied connections linger 5 s');
    // synproxy's handshake ACK (bad TSEcr) held back where timestamps are on; a speaks-first service keeps it
    const ackHeld = /tcp flags & \(fin\|syn\|rst\|ack\) == ack fib saddr type != local counter name synproxy_ack_held drop/;
    assert.match(chain('synproxied')[3]!, new RegExp(`ip daddr 10\\.0\\.3\\.2 tcp dport 80 ${ackHeld.source}`));
    const mixed = renderShieldBody(resolveShield(settings({ shieldMode: 'router', shieldInterface: ['wan0'], shieldService: ['web=tcp:10.0.3.2:80', 'smtp=tcp:10.0.3.2:25,speaks-first'] })));
    assert.deepEqual(mixed.filter((l) => ackHeld.test(l)).map((l) => /dport (\d+)/.exec(l)?.[1]), ['80'], 'not for the speaks-first service (no timestamps: its ACK is good)');
  });
  it('proxied services: TCP only, SYN cookies (the connection ends here), PROXY v2 only with proxy; TPROXY after the edge drops', () => {
    const spec = resolveShield(settings({ shieldMode: 'router', shieldInterface: ['wan0'], shieldService: ['web=tcp:10.0.3.2:80,proxy,proxy-protocol', 'smtp=tcp:10.0.3.2:25'] }));
    assert.deepEqual(spec.services.map((s) => [s.name, s.proxy, s.proxyProtocol, s.syn]), [['web', true, true, 'cookies'], ['smtp', false, false, 'synproxy']]);
    const refused = (svc: string, re: RegExp): void => assert.throws(() => resolveShield(settings({ shieldMode: 'router', shieldInterface: ['wan0'], shieldService: [svc] })), re);
    refused('game=udp:10.0.3.3:9999,proxy', /game=udp:10\.0\.3\.3:9999,proxy: proxy is for TCP services/);
    refused('web=tcp:10.0.3.2:80,proxy-protocol', /proxy-protocol needs proxy/);
    refused('web=tcp:10.0.3.2:80,proxy,syn=synproxy', /leave out syn=synproxy/);
    refused('web=tcp:10.0.3.2:80,proxy=1', /proxy takes no value/);
    assert.throws(() => resolveShield(settings({ shieldService: ['web=tcp:80,proxy'], shieldRateGrace: 0.1 })), /--shield-rate-grace must be 0\.5-600 seconds, got 0\.1/);
    assert.deepEqual(spec.proxy, { firstByteMs: 10_000, minRate: 256, graceMs: 5000, zeroWindowMs: 10_000, maxConns: 10_000 });

    const body = renderShieldBody(spec, new Set(), new Map([['web', { 4: 40123 }]]));
    const at = (re: RegExp): number => body.findIndex((l) => re.test(l));
    assert.ok(at(/iifname "wan0" ip daddr 10\.0\.3\.2 tcp dport 80 tproxy ip to :40123 meta mark set 0x6578 accept/) > 0, 'the proxied service goes to the proxy');
    assert.equal(body.filter((l) => /tproxy/.test(l)).length, 1, 'only the proxied service is diverted');
    assert.ok(at(/hook prerouting priority mangle/) > at(/hook prerouting priority -350/), 'diverted after the edge chain had its say');
    assert.ok(at(/chain guard_local/) > 0 && /hook input/.test(body[at(/chain guard_local/) + 1]!), 'router mode: the diverted packets meet the limits on input');
    const host = renderShieldBody(resolveShield(settings({ shieldService: ['web=tcp:80,proxy'] })), new Set(), new Map([['web', { 4: 1, 6: 2 }]]));
    assert.deepEqual(host.filter((l) => /tproxy/.test(l)).map((l) => l.trim()), [
      'iifname != "lo" fib daddr type local meta nfproto ipv4 tcp dport 80 tproxy ip to :1 meta mark set 0x6578 accept',
      'iifname != "lo" fib daddr type local meta nfproto ipv6 tcp dport 80 tproxy ip6 to :2 meta mark set 0x6578 accept',
    ], 'host mode: only what is addressed to this host, both families');
    assert.equal(host.some((l) => /guard_local/.test(l)), false, 'host mode guards input already');
  });
  it('keeps the management API reachable from sources a meter blocked (not from hand-made blocks), unless it listens on loopback', () => {
    const body = renderShieldBody(resolveShield(settings({ api: '0.0.0.0:8080', shieldService: ['web=tcp:80'] })));
    const at = (re: RegExp): number => body.findIndex((l) => re.test(l));
    assert.ok(at(/^\s*fib daddr type local tcp dport 8080 return$/) > at(/@manual6 counter name blocked_manual drop/), 'after the hand-made blocklist');
    assert.ok(at(/^\s*fib daddr type local tcp dport 8080 return$/) < at(/@block4 counter name blocked_meter_tcp drop/), "before the meters' blocklist");
    const v6 = renderShieldBody(resolveShield(settings({ api: '[2001:db8::5]:9000', shieldService: ['web=tcp:80'] })));
    assert.ok(v6.some((l) => l.trim() === 'ip6 daddr 2001:db8::5 fib daddr type local tcp dport 9000 return'));
    const lo = renderShieldBody(resolveShield(settings({ api: '127.0.0.1:8080', shieldService: ['web=tcp:80'] })));
    assert.equal(lo.some((l) => /dport 8080/.test(l)), false, 'loopback is outside the shield');
    assert.throws(() => resolveShield(settings({ api: '0.0.0.0:8080', shieldService: ['alt=tcp:8000-8100'] })), /--shield-service alt: its ports take in the management API's port 8080 \(--api\)/);
  });
  it('reads services written as YAML mappings (the issue\'s form) as their SPECs, and names the entry of a mistake', () => {
    const path = join(tmpdir(), `edgeward-shield-yaml-${process.pid}.yaml`);
    writeFileSync(path, `shield:
  mode: router
  interface: [wan0]
  management: [192.0.2.0/24]
  service:
    - { name: web, address: 10.0.3.2, port: 80, protocol: tcp, proxy: true, proxy-protocol: true }
    - { name: smtp, address: 10.0.3.2, port: 25, protocol: tcp, speaks-first: true }
    - { name: game, address: 10.0.3.3, port: 9999, protocol: udp, rate-per-source: 3000 }
    - { name: v6, address: "fd00::2", port: 8000-8010, protocol: tcp, conns: 8 }
    - "dns=udp:10.0.3.3:53"
`);
    const spec = resolveShield(resolveSettings(readConfigFile(path), {}));
    assert.deepEqual(
      spec.services.map((s) => [s.name, s.protocol, s.address, s.ports, s.rate, s.conns, s.speaksFirst, s.proxy, s.proxyProtocol]),
      [
        ['web', 'tcp', '10.0.3.2', [80, 80], 100, 64, false, true, true],
        ['smtp', 'tcp', '10.0.3.2', [25, 25], 100, 64, true, false, false],
        ['game', 'udp', '10.0.3.3', [9999, 9999], 3000, 64, false, false, false],
        ['v6', 'tcp', 'fd00::2', [8000, 8010], 100, 8, false, false, false],
        ['dns', 'udp', '10.0.3.3', [53, 53], 2000, 64, false, false, false],
      ],
    );
    for (const [entry, re] of [
      ['{ name: web, port: 80, protocol: tcp, color: blue }', /shield\.service\[0\]: unknown key "color"/],
      ['{ name: web, port: 80 }', /shield\.service\[0\]: name, protocol and port are required/],
      ['{ name: web, port: 80, protocol: sctp }', /shield\.service\[0\]: protocol must be tcp or udp, got "sctp"/],
      ['{ name: web, port: 80, protocol: tcp, proxy: yes please }', /shield\.service\[0\]: proxy must be true or false/],
      ['{ name: web, port: 80, protocol: tcp, rate: 5, rate-per-source: 6 }', /rate and rate-per-source are the same setting/],
    ] as const) {
      writeFileSync(path, `shield:\n  service:\n    - ${entry}\n`);
      assert.throws(() => readConfigFile(path), re, entry);
    }
  });
});
