import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isIPv4 } from 'node:net';
import { CidrList, cidrContains, formatCidr, formatIp, isIPv4Text, isLoopback, normalizeHostname, parseCidr, parseIp, type Cidr, type IpAddress } from '../../src/net/address.js';

function ip(text: string): IpAddress {
  const a = parseIp(text);
  assert.ok(a, `${text} should parse`);
  return a;
}

/** A parse as the value or the error's message (assertions below read either). */
function parsed(text: string): Cidr | string {
  const r = parseCidr(text);
  return r.ok ? r.value : r.error.message;
}

function cidr(text: string): Cidr {
  const c = parsed(text);
  assert.ok(typeof c !== 'string', `${text}: ${String(c)}`);
  return c;
}

function cidrError(text: string): string {
  const c = parsed(text);
  assert.equal(typeof c, 'string', `${text} should be refused`);
  return c as string;
}

describe('parseIp', () => {
  it('reads IPv4 and IPv6 literals', () => {
    assert.deepEqual(parseIp('192.0.2.7'), { family: 4, bytes: new Uint8Array([192, 0, 2, 7]) });
    assert.deepEqual(parseIp('2001:db8::1'), { family: 6, bytes: new Uint8Array([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) });
    assert.deepEqual(parseIp('::'), { family: 6, bytes: new Uint8Array(16) });
  });

  it('accepts brackets and drops a zone index', () => {
    assert.deepEqual(parseIp('[2001:db8::1]'), parseIp('2001:db8::1'));
    assert.deepEqual(parseIp('fe80::1%eth0'), parseIp('fe80::1'));
  });

  it('returns IPv4-mapped IPv6 addresses as IPv4, in dotted and hex form', () => {
    assert.deepEqual(parseIp('::ffff:192.0.2.7'), { family: 4, bytes: new Uint8Array([192, 0, 2, 7]) });
    assert.deepEqual(parseIp('::FFFF:c000:0207'), { family: 4, bytes: new Uint8Array([192, 0, 2, 7]) });
  });

  it('reads an embedded IPv4 tail that is not a mapped address by its value', () => {
    assert.equal(formatIp(ip('64:ff9b::192.0.2.33')), '64:ff9b::c000:221');
  });

  it('returns null for anything that is not an IP literal', () => {
    for (const s of ['', 'example.com', '1.2.3', '256.1.1.1', '1.2.3.4.5', '1:2:3', ':::', '2001:db8::1::2', '12345::', '[192.0.2.7]', ' 192.0.2.7', '192.0.2.7/32']) {
      assert.equal(parseIp(s), null, JSON.stringify(s));
    }
  });
});

describe('formatIp', () => {
  it('writes IPv6 in RFC 5952 canonical form', () => {
    const cases: Array<[string, string]> = [
      ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'], // lower case, leading zeros dropped
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // equal runs: the first is compressed
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run is compressed
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
      ['0:2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['FE80:0:0:0:0:0:0:ABCD', 'fe80::abcd'],
      ['2001:DB8:AAAA:BBBB:CCCC:DDDD:EEEE:FFFF', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff'],
    ];
    for (const [input, canonical] of cases) assert.equal(formatIp(ip(input)), canonical, input);
  });

  it('writes IPv4 as dotted decimal', () => {
    assert.equal(formatIp(ip('192.0.2.7')), '192.0.2.7');
    assert.equal(formatIp(ip('::ffff:10.0.0.1')), '10.0.0.1');
  });

  it('agrees with the WHATWG URL serializer (also RFC 5952) on 5000 random zero-heavy addresses', () => {
    let seed = 0x5952;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 4294967296;
    };
    for (let n = 0; n < 5000; n++) {
      const bytes = new Uint8Array(16);
      for (let g = 0; g < 8; g++) {
        if (rand() < 0.5) continue; // a zero group
        const v = rand() < 0.3 ? Math.floor(rand() * 16) : Math.floor(rand() * 65536);
        bytes[g * 2] = v >> 8;
        bytes[g * 2 + 1] = v & 0xff;
      }
      const text = formatIp({ family: 6, bytes });
      const oracle = new URL(`http://[${text}]/`).hostname.slice(1, -1);
      assert.equal(text, oracle, Buffer.from(bytes).toString('hex'));
      // and the text reads back to the same address
      const back = parseIp(text);
      if (back?.family === 6) assert.deepEqual(back.bytes, bytes);
    }
  });
});

describe('parseCidr', () => {
  it('masks the host bits', () => {
    assert.equal(formatCidr(cidr('10.1.2.3/8')), '10.0.0.0/8');
    assert.equal(formatCidr(cidr('192.0.2.77/26')), '192.0.2.64/26');
    assert.equal(formatCidr(cidr('192.0.2.255/0')), '0.0.0.0/0');
    assert.equal(formatCidr(cidr('2001:db8:ffff::1/32')), '2001:db8::/32');
    assert.equal(formatCidr(cidr('2001:db8:1:ffff::/49')), '2001:db8:1:8000::/49');
  });

  it('reads a bare address as a full-length block', () => {
    assert.equal(formatCidr(cidr('192.0.2.7')), '192.0.2.7/32');
    assert.equal(formatCidr(cidr('2001:DB8::1')), '2001:db8::1/128');
  });

  it('accepts the prefix bounds 0 and 32 / 128', () => {
    assert.equal(cidr('10.0.0.0/0').prefix, 0);
    assert.equal(cidr('10.0.0.1/32').prefix, 32);
    assert.equal(cidr('::/0').prefix, 0);
    assert.equal(cidr('::1/128').prefix, 128);
  });

  it('refuses a prefix out of bounds, saying the range for the family', () => {
    assert.match(cidrError('10.0.0.0/33'), /"\/33" must be 0\.\.32 for IPv4/);
    assert.match(cidrError('2001:db8::/129'), /"\/129" must be 0\.\.128 for IPv6/);
    for (const bad of ['10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/a', '10.0.0.0/8/8', '10.0.0.0/ 8', '10.0.0.0/1000']) {
      assert.match(cidrError(bad), /prefix length/, bad);
    }
  });

  it('refuses something that is not an address, quoting it', () => {
    assert.match(cidrError('example.com/8'), /"example\.com" is not an IPv4 or IPv6 address/);
    assert.match(cidrError('10.0.0/8'), /"10\.0\.0"/);
  });

  it('narrows an IPv4-mapped IPv6 block to its IPv4 part', () => {
    assert.equal(formatCidr(cidr('::ffff:10.0.0.0/104')), '10.0.0.0/8');
    assert.equal(formatCidr(cidr('::ffff:192.0.2.1/120')), '192.0.2.0/24');
    assert.equal(formatCidr(cidr('::ffff:192.0.2.1/128')), '192.0.2.1/32');
    assert.equal(cidr('::ffff:192.0.2.1/128').family, 4);
    // the prefix is checked against the text's family
    assert.match(cidrError('::ffff:10.0.0.0/129'), /0\.\.128/);
  });
});

describe('cidrContains', () => {
  it('answers inside / outside at byte and bit boundaries', () => {
    const b = cidr('192.0.2.64/26');
    for (const inside of ['192.0.2.64', '192.0.2.100', '192.0.2.127']) assert.equal(cidrContains(b, ip(inside)), true, inside);
    for (const outside of ['192.0.2.63', '192.0.2.128', '192.0.3.64', '10.0.2.64']) assert.equal(cidrContains(b, ip(outside)), false, outside);
    const b17 = cidr('10.128.0.0/17');
    assert.equal(cidrContains(b17, ip('10.128.127.255')), true);
    assert.equal(cidrContains(b17, ip('10.128.128.0')), false);
  });

  it('matches exactly one address with a full-length block and every address of the family with /0', () => {
    assert.equal(cidrContains(cidr('192.0.2.7/32'), ip('192.0.2.7')), true);
    assert.equal(cidrContains(cidr('192.0.2.7/32'), ip('192.0.2.6')), false);
    assert.equal(cidrContains(cidr('0.0.0.0/0'), ip('255.255.255.255')), true);
    assert.equal(cidrContains(cidr('::/0'), ip('2001:db8::1')), true);
  });

  it('matches IPv6 blocks', () => {
    assert.equal(cidrContains(cidr('2001:db8::/32'), ip('2001:db8:ffff::1')), true);
    assert.equal(cidrContains(cidr('2001:db8::/32'), ip('2001:db9::1')), false);
    assert.equal(cidrContains(cidr('fe80::/10'), ip('febf::1')), true);
    assert.equal(cidrContains(cidr('fe80::/10'), ip('fec0::1')), false);
  });

  it('never matches across families; a mapped address counts as IPv4', () => {
    assert.equal(cidrContains(cidr('::/0'), ip('192.0.2.7')), false);
    assert.equal(cidrContains(cidr('0.0.0.0/0'), ip('2001:db8::1')), false);
    assert.equal(cidrContains(cidr('192.0.2.0/24'), ip('::ffff:192.0.2.7')), true);
  });
});

describe('isLoopback', () => {
  it('is true for 127/8, ::1 and mapped 127/8', () => {
    for (const s of ['127.0.0.1', '127.255.255.254', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) assert.equal(isLoopback(ip(s)), true, s);
  });

  it('is false for other addresses, including the unspecified ones', () => {
    for (const s of ['128.0.0.1', '126.255.255.255', '0.0.0.0', '10.0.0.1', '::', '::2', '1::1', 'fe80::1', '::ffff:10.0.0.1']) assert.equal(isLoopback(ip(s)), false, s);
  });
});

describe('CidrList', () => {
  it('answers whether an address is inside any block', () => {
    const l = CidrList.parse(['10.0.0.0/8', '192.168.1.0/24', '2001:db8::/32'], '--socks-allow');
    assert.equal(l.size, 3);
    assert.equal(l.contains(ip('10.9.9.9')), true);
    assert.equal(l.contains(ip('192.168.1.77')), true);
    assert.equal(l.contains(ip('::ffff:192.168.1.77')), true);
    assert.equal(l.contains(ip('2001:db8::5')), true);
    assert.equal(l.contains(ip('192.168.2.1')), false);
    assert.equal(l.contains(ip('2001:db9::5')), false);
    assert.equal(CidrList.parse([], 'x').contains(ip('10.0.0.1')), false);
  });

  it('throws an error naming the setting and a bad address entry', () => {
    assert.throws(() => CidrList.parse(['10.0.0.0/8', 'banana/8'], '--socks-allow'), (e: Error) => {
      assert.match(e.message, /^--socks-allow: /);
      assert.match(e.message, /banana/);
      return true;
    });
  });

  it('throws an error naming the whole entry when its prefix is bad', () => {
    assert.throws(() => CidrList.parse(['10.0.0.0/8', '192.168.1.0/33'], '--socks-deny'), (e: Error) => {
      assert.match(e.message, /^--socks-deny: /);
      assert.ok(e.message.includes('192.168.1.0/33'), `"${e.message}" should name the entry 192.168.1.0/33`);
      return true;
    });
  });
});

describe('normalizeHostname', () => {
  it('lower-cases and drops one trailing dot', () => {
    assert.equal(normalizeHostname('Example.COM.'), 'example.com');
    assert.equal(normalizeHostname('WWW.example.com'), 'www.example.com');
    assert.equal(normalizeHostname('localhost'), 'localhost');
    assert.equal(normalizeHostname('_sip._tcp.example.com'), '_sip._tcp.example.com');
    assert.equal(normalizeHostname('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  });

  it('refuses what is not a DNS name', () => {
    for (const s of ['', '.', 'example.com..', 'a..b', '.example.com', '-a.example.com', 'a-.example.com', 'a b.com', '*.example.com', 'exa!mple.com', 'bücher.example']) {
      assert.equal(normalizeHostname(s), null, JSON.stringify(s));
    }
  });

  it('enforces 63 bytes per label and 253 per name', () => {
    assert.equal(normalizeHostname(`${'a'.repeat(63)}.com`), `${'a'.repeat(63)}.com`);
    assert.equal(normalizeHostname(`${'a'.repeat(64)}.com`), null);
    const name253 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(name253.length, 253);
    assert.equal(normalizeHostname(name253), name253);
    assert.equal(normalizeHostname(`${name253}.`), name253);
    assert.equal(normalizeHostname(`${name253}e`), null);
  });
});

describe('isIPv4Text: the deny lists, access lists and policies decide by it', () => {
  it('agrees with node:net isIPv4 on edge cases and on 20 000 random near-addresses', () => {
    const cases = ['0.0.0.0', '255.255.255.255', '256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.02.3.4', '1.2.3.04', '00.0.0.0', '1..2.3', '.1.2.3', '1.2.3.', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.-4', '1.2.3.a', '::ffff:1.2.3.4', '', '1000.1.1.1', '127.0.0.1', '10.0.0.255', '99.99.99.99', '199.1.1.1', '249.250.251.252', '١.٢.٣.٤'];
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    // 3 to 5 parts of 0 to 4 characters, mostly digits
    for (let i = 0; i < 20_000; i++) {
      const parts: string[] = [];
      const count = next() < 0.8 ? 4 : 3 + Math.floor(next() * 3);
      for (let p = 0; p < count; p++) {
        let part = '';
        const len = next() < 0.9 ? 1 + Math.floor(next() * 3) : Math.floor(next() * 5);
        for (let j = 0; j < len; j++) part += next() < 0.97 ? String(Math.floor(next() * 10)) : 'x: '[Math.floor(next() * 3)]!;
        parts.push(part);
      }
      cases.push(parts.join('.'));
    }
    for (const s of cases) assert.equal(isIPv4Text(s), isIPv4(s), `"${s}"`);
    assert.ok(cases.filter((s) => isIPv4(s)).length > 100, 'the random strings include many valid addresses');
  });
});
