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
    assert.ok(at(/@allow4 return/) < at(/@block4 counter name blocked_meter_tcp drop/), 'the allowlist before the blocklist');
    assert.ok(at(/@block4 counter name blocked_meter_tcp drop/) < at(/@block4 counter name blocked_meter_other drop/), 'blocked TCP counted apart from the rest');
    assert.ok(at(/@management4 accept/) < at(/jump sample/) && at(/jump sample/) < at(/@allow4 return/), 'the source sample sees every packet after the management sources');
    assert.ok(at(/tcp dport 80 tcp flags & \(syn\|ack\) == syn notrack/) > at(/jump edge/));
    assert.ok(at(/counter name svc_web_synproxy synproxy mss 1460 wscale 10 timestamp sack-perm$/) > 0, "the counter before synproxy, which takes the packet");
  });
});
