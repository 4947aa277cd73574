// The interception firewall's generator: validation names the flag at fault and the nft script holds
// what it must. That the real nft accepts the scripts is test/integration/firewall-nft-check.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_MARK,
  DEFAULT_TABLE,
  FirewallError,
  NFT_TABLE,
  ROUTE_PROTOCOL,
  renderRuleset,
  routingCommands,
  validateFirewallSpec,
  type FirewallSpec,
} from '../../src/intercept/firewall.js';

const base: FirewallSpec = { port: 15001, interfaces: ['lan0'], sources: [], excludes: [], dports: [] };
const spec = (over: Partial<FirewallSpec>): FirewallSpec => ({ ...base, ...over });

function flagsOf(s: FirewallSpec): string[] {
  return validateFirewallSpec(s).map((e) => e.flag);
}

describe('validateFirewallSpec', () => {
  it('accepts a minimal spec and a full one with IPv4 and IPv6 blocks', () => {
    assert.deepEqual(validateFirewallSpec(base), []);
    const full = spec({ interfaces: ['lan0', 'wlan0', 'br-lan.10'], sources: ['192.168.1.0/24', '2001:db8:1::/64'], excludes: ['10.0.0.0/8', 'fd00::/8'], dports: [80, 443], mark: 1, table: 100 });
    assert.deepEqual(validateFirewallSpec(full), []);
  });

  const cases: Array<[string, Partial<FirewallSpec>, string, RegExp]> = [
    ['port 0', { port: 0 }, '--port', /1\.\.65535/],
    ['port 65536', { port: 65536 }, '--port', /65536/],
    ['port NaN', { port: Number.NaN }, '--port', /--port/],
    ['no interface', { interfaces: [] }, '--interface', /at least one/],
    ['a 16-character interface', { interfaces: ['abcdefghijklmnop'] }, '--interface', /longer than 15/],
    ['a quote in an interface name', { interfaces: ['lan"0'] }, '--interface', /not an interface name/],
    ['a space in an interface name', { interfaces: ['lan 0'] }, '--interface', /not an interface name/],
    ['an interface named ".."', { interfaces: ['..'] }, '--interface', /not an interface name/],
    ['a source that is no address', { sources: ['example.com'] }, '--source', /example\.com/],
    ['a source prefix out of range', { sources: ['192.0.2.0/33'] }, '--source', /\/33/],
    ['an exclude that is no address', { excludes: ['10.0.0.300/8'] }, '--exclude', /10\.0\.0\.300/],
    ['a v6 exclude prefix out of range', { excludes: ['2001:db8::/129'] }, '--exclude', /129/],
    ['dport 0', { dports: [0] }, '--dport', /1\.\.65535/],
    ['dport 1.5', { dports: [1.5] }, '--dport', /1\.5/],
    ['mark 0', { mark: 0 }, '--mark', /--mark/],
    ['mark above 32 bits', { mark: 2 ** 32 }, '--mark', /0xffffffff/],
    ['table main', { table: 254 }, '--table', /main/],
    ['table local', { table: 255 }, '--table', /local/],
    ['table 0', { table: 0 }, '--table', /--table/],
    ['family ipv5', { family: 'ipv5' as FirewallSpec['family'] }, '--family', /ipv4, ipv6 or both/],
    ['an IPv6 source with --family ipv4', { family: 'ipv4', sources: ['2001:db8::/32'] }, '--source', /IPv6.*ipv4/],
    ['an IPv4 exclude with --family ipv6', { family: 'ipv6', excludes: ['10.0.0.0/8'] }, '--exclude', /IPv4.*ipv6/],
  ];
  for (const [name, over, flag, text] of cases) {
    it(`names ${flag} for ${name}`, () => {
      const errors = validateFirewallSpec(spec(over));
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(errors[0]!.flag, flag);
      assert.ok(errors[0]!.message.startsWith(`${flag}: `), errors[0]!.message);
      assert.match(errors[0]!.message, text);
      assert.equal(errors[0]!.code, `invalid_${flag.slice(2)}`);
    });
  }

  it('reports every problem at once', () => {
    assert.deepEqual(flagsOf({ port: 0, interfaces: [], sources: ['x'], excludes: ['y'], dports: [0] }), ['--port', '--interface', '--source', '--exclude', '--dport']);
  });

  it('bounds every list', () => {
    assert.deepEqual(flagsOf(spec({ dports: Array.from({ length: 10_001 }, () => 80) })), ['--dport']);
  });
});

describe('renderRuleset', () => {
  const full = spec({
    port: 15001,
    interfaces: ['lan0', 'wlan1', 'lan0'],
    excludes: ['10.1.2.3/8', '2001:db8:ffff::1/48', '192.0.2.7'],
    sources: ['192.168.1.0/24', '2001:db8:1::/64'],
    dports: [443, 80, 443],
  });
  const script = renderRuleset(full);

  it('replaces the table in one transaction: declare, delete, define', () => {
    const lines = script.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(lines.slice(0, 3), [`table inet ${NFT_TABLE} {}`, `delete table inet ${NFT_TABLE}`, `table inet ${NFT_TABLE} {`]);
    assert.equal(script.match(/^table inet /gm)?.length, 2, 'only its own table, declared twice');
    assert.doesNotMatch(script, /flush ruleset|^\s*flush /m, 'never flushes anything');
  });

  it('intercepts only on the given interfaces, each once', () => {
    assert.match(script, /set intercept_ifaces \{\s*type ifname\s*elements = \{ "lan0", "wlan1" \}/);
    assert.match(script, /iifname != @intercept_ifaces return/);
  });

  it('hooks prerouting at mangle priority and handles TCP only', () => {
    assert.match(script, /type filter hook prerouting priority mangle; policy accept;/);
    assert.match(script, /meta l4proto != tcp return/);
  });

  it('fast path first: packets of open transparent sockets are marked and accepted', () => {
    const chain = script.slice(script.indexOf('chain prerouting'));
    const rules = chain.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('type ') && !l.startsWith('chain') && l !== '}');
    assert.match(rules[0]!, /^meta l4proto tcp socket transparent 1 meta mark set 0x6577 accept/);
  });

  it('skips local destinations, excluded blocks (by family) and sources outside --source', () => {
    assert.match(script, /fib daddr type local return/);
    assert.match(script, /set excluded_v4 \{\s*type ipv4_addr\s*flags interval\s*auto-merge\s*elements = \{ 10\.0\.0\.0\/8, 192\.0\.2\.7\/32 \}/);
    assert.match(script, /set excluded_v6 \{\s*type ipv6_addr\s*flags interval\s*auto-merge\s*elements = \{ 2001:db8:ffff::\/48 \}/);
    assert.match(script, /ip daddr @excluded_v4 return/);
    assert.match(script, /ip6 daddr @excluded_v6 return/);
    assert.match(script, /set sources_v6 \{\s*type ipv6_addr[^}]*elements = \{ 2001:db8:1::\/64 \}/);
    assert.match(script, /ip saddr != @sources_v4 return/);
    assert.match(script, /ip6 saddr != @sources_v6 return/);
  });

  it('only the --dport ports, when given', () => {
    assert.match(script, /set dports \{\s*type inet_service\s*elements = \{ 80, 443 \}/);
    assert.match(script, /tcp dport != @dports return/);
    assert.doesNotMatch(renderRuleset(base), /dport/);
  });

  it('TPROXY to the port with the mark, for IPv4 and IPv6, as the last rules', () => {
    assert.match(script, /meta nfproto ipv4 meta l4proto tcp tproxy ip to :15001 meta mark set 0x6577 accept\n\s*meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :15001 meta mark set 0x6577 accept\n\s*\}\n\}\n$/);
  });

  it('uses --mark as given', () => {
    const s = renderRuleset(spec({ mark: 0xbeef }));
    assert.equal(s.match(/meta mark set 0xbeef/g)?.length, 3);
    assert.doesNotMatch(s, /0x6577/);
  });

  it('--family ipv4 leaves IPv6 alone', () => {
    const s = renderRuleset(spec({ family: 'ipv4', excludes: ['10.0.0.0/8'] }));
    assert.match(s, /tproxy ip to :15001/);
    assert.doesNotMatch(s, /ip6|ipv6_addr/);
    assert.match(s, /^\s*meta nfproto ipv4 meta l4proto tcp socket transparent 1/m);
  });

  it('--source with IPv4 blocks only: IPv6 clients are not intercepted', () => {
    const s = renderRuleset(spec({ sources: ['192.168.1.0/24'] }));
    assert.match(s, /ip saddr != @sources_v4 return/);
    assert.match(s, /meta nfproto ipv6 return/);
    assert.doesNotMatch(s, /sources_v6/);
  });

  it('an IPv4-mapped IPv6 block goes to the IPv4 set', () => {
    assert.match(renderRuleset(spec({ excludes: ['::ffff:192.0.2.0/120'] })), /set excluded_v4 \{[^}]*192\.0\.2\.0\/24/);
  });

  it('throws a FirewallError with the spec errors for a bad spec', () => {
    assert.throws(
      () => renderRuleset(spec({ port: 0 })),
      (e: unknown) => e instanceof FirewallError && e.code === 'invalid_spec' && e.specErrors[0]?.flag === '--port' && /--port/.test(e.message),
    );
  });
});

describe('routingCommands', () => {
  it('adds a tagged fwmark rule and a local default route per family', () => {
    assert.deepEqual(routingCommands(base, 'apply'), [
      ['ip', '-4', 'rule', 'add', 'fwmark', '0x6577', 'lookup', '25975', 'protocol', '101'],
      ['ip', '-4', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '25975', 'proto', '101'],
      ['ip', '-6', 'rule', 'add', 'fwmark', '0x6577', 'lookup', '25975', 'protocol', '101'],
      ['ip', '-6', 'route', 'add', 'local', '::/0', 'dev', 'lo', 'table', '25975', 'proto', '101'],
    ]);
    assert.equal(DEFAULT_MARK, 0x6577);
    assert.equal(DEFAULT_TABLE, 25975);
    assert.equal(ROUTE_PROTOCOL, 101);
  });

  it('removal mirrors it, with --mark/--table/--family', () => {
    assert.deepEqual(routingCommands(spec({ mark: 7, table: 100, family: 'ipv6' }), 'remove'), [
      ['ip', '-6', 'rule', 'del', 'fwmark', '0x7', 'lookup', '100', 'protocol', '101'],
      ['ip', '-6', 'route', 'del', 'local', '::/0', 'dev', 'lo', 'table', '100', 'proto', '101'],
    ]);
  });
});
