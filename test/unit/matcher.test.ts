import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchIdentity, normalizeMatch as normalizeMatchResult, PolicyMatcher, type NormalizedMatch } from '../../src/policy/matcher.js';
import type { Destination, Policy, PolicyMatch } from '../../src/policy/types.js';

let nextId = 1;
/** A stored policy with the given match; the comment names it in assertion output. */
function policy(match: PolicyMatch, comment = JSON.stringify(match)): Policy {
  const now = '2024-01-01T00:00:00.000Z';
  return { id: nextId++, match, transport: { mptcp: true }, comment, createdAt: now, updatedAt: now };
}

/** The comment of the policy that applies to `dest`, or null for the default policy. */
function winner(policies: Policy[], dest: Destination): string | null {
  return new PolicyMatcher(policies).match(dest)?.comment ?? null;
}

/** normalizeMatch's value, or its error's message (the assertions below read either). */
function normalizeMatch(m: PolicyMatch): NormalizedMatch | string {
  const r = normalizeMatchResult(m);
  return r.ok ? r.value : r.error.message;
}

function normalized(m: PolicyMatch): NormalizedMatch {
  const n = normalizeMatch(m);
  assert.ok(typeof n !== 'string', `${JSON.stringify(m)}: ${String(n)}`);
  return n;
}

describe('PolicyMatcher: the documented order', () => {
  it('exact host > exact IP > wildcard > CIDR > default, whatever the insertion order', () => {
    const all = [
      policy({ cidr: '192.0.2.0/24' }, 'cidr'),
      policy({ host: '*.example.com' }, 'wildcard'),
      policy({ host: '192.0.2.7' }, 'ip'),
      policy({ host: 'www.example.com' }, 'host'),
    ];
    const dest: Destination = { host: 'www.example.com', ip: '192.0.2.7', port: 443 };
    for (const order of [all, [...all].reverse()]) {
      const seen: Array<string | null> = [];
      let left = order;
      for (;;) {
        const w = winner(left, dest);
        seen.push(w);
        if (w === null) break;
        left = left.filter((p) => p.comment !== w);
      }
      assert.deepEqual(seen, ['host', 'ip', 'wildcard', 'cidr', null]);
    }
  });

  it('gives no policy (the default) to a destination nothing matches', () => {
    const ps = [policy({ host: 'example.com' }), policy({ cidr: '10.0.0.0/8' }), policy({ host: '*.example.org' })];
    assert.equal(new PolicyMatcher(ps).match({ host: 'example.net', ip: '192.0.2.1', port: 80 }), null);
    assert.equal(new PolicyMatcher([]).match({ ip: '192.0.2.1', port: 80 }), null);
  });

  it('returns the stored policy object itself', () => {
    const p = policy({ host: 'example.com' });
    assert.equal(new PolicyMatcher([p]).match({ host: 'example.com', port: 1 }), p);
  });

  it('treats cidr a.b.c.d/32 as an exact IP: it beats a wildcard and any shorter CIDR', () => {
    const ps = [policy({ host: '*.example.com' }, 'wildcard'), policy({ cidr: '192.0.2.0/31' }, '/31'), policy({ cidr: '192.0.2.7/32' }, '/32')];
    assert.equal(winner(ps, { host: 'a.example.com', ip: '192.0.2.7', port: 80 }), '/32');
  });

  it('prefers the wildcard with more labels', () => {
    const ps = [policy({ host: '*.example.com' }, 'two'), policy({ host: '*.a.example.com' }, 'three'), policy({ host: '*.com' }, 'one')];
    assert.equal(winner(ps, { host: 'x.a.example.com', port: 80 }), 'three');
    assert.equal(winner(ps, { host: 'deep.x.a.example.com', port: 80 }), 'three');
    assert.equal(winner(ps, { host: 'x.b.example.com', port: 80 }), 'two');
    assert.equal(winner(ps, { host: 'example.com', port: 80 }), 'one');
    assert.equal(winner(ps, { host: 'example.org', port: 80 }), null);
  });

  it('does not apply *.example.com to example.com itself', () => {
    const ps = [policy({ host: '*.example.com' }, 'wildcard'), policy({ cidr: '0.0.0.0/0' }, 'everything')];
    assert.equal(winner(ps, { host: 'example.com', port: 80 }), null);
    assert.equal(winner(ps, { host: 'example.com', ip: '192.0.2.1', port: 80 }), 'everything');
    assert.equal(winner(ps, { host: 'notexample.com', port: 80 }), null);
    assert.equal(winner(ps, { host: 'www.example.com', port: 80 }), 'wildcard');
  });

  it('prefers the longer CIDR prefix', () => {
    const ps = [
      policy({ cidr: '0.0.0.0/0' }, '/0'),
      policy({ cidr: '10.1.2.0/24' }, '/24'),
      policy({ cidr: '10.0.0.0/8' }, '/8'),
      policy({ cidr: '10.1.0.0/16' }, '/16'),
      policy({ cidr: '10.1.2.128/25' }, '/25'),
    ];
    assert.equal(winner(ps, { ip: '10.1.2.3', port: 80 }), '/24');
    assert.equal(winner(ps, { ip: '10.1.2.200', port: 80 }), '/25');
    assert.equal(winner(ps, { ip: '10.1.9.9', port: 80 }), '/16');
    assert.equal(winner(ps, { ip: '10.9.9.9', port: 80 }), '/8');
    assert.equal(winner(ps, { ip: '11.0.0.1', port: 80 }), '/0');
  });
});

describe('PolicyMatcher: ports', () => {
  it('prefers a policy with a port over one without, for each kind', () => {
    const pairs: Array<[PolicyMatch, Destination]> = [
      [{ host: 'example.com' }, { host: 'example.com', port: 443 }],
      [{ host: '192.0.2.7' }, { ip: '192.0.2.7', port: 443 }],
      [{ host: '*.example.com' }, { host: 'a.example.com', port: 443 }],
      [{ cidr: '192.0.2.0/24' }, { ip: '192.0.2.7', port: 443 }],
    ];
    for (const [match, dest] of pairs) {
      const portless = policy(match, 'portless');
      const withPort = policy({ ...match, port: 443 }, 'port');
      assert.equal(winner([portless, withPort], dest), 'port', JSON.stringify(match));
      assert.equal(winner([withPort, portless], dest), 'port', JSON.stringify(match));
      assert.equal(winner([portless, withPort], { ...dest, port: 80 }), 'portless', `${JSON.stringify(match)} on another port`);
    }
  });

  it('never applies a policy whose port differs', () => {
    const ps = [policy({ host: 'example.com', port: 443 }), policy({ host: '*.example.com', port: 443 }), policy({ cidr: '192.0.2.0/24', port: 443 }), policy({ host: '192.0.2.7', port: 443 })];
    assert.equal(new PolicyMatcher(ps).match({ host: 'example.com', ip: '192.0.2.7', port: 80 }), null);
    assert.equal(new PolicyMatcher(ps).match({ host: 'a.example.com', ip: '192.0.2.8', port: 8443 }), null);
  });

  it('falls through to a less specific kind when the more specific one is for another port', () => {
    const ps = [policy({ host: 'example.com', port: 443 }, 'host:443'), policy({ cidr: '192.0.2.0/24' }, 'cidr')];
    assert.equal(winner(ps, { host: 'example.com', ip: '192.0.2.7', port: 80 }), 'cidr');
    const cidrs = [policy({ cidr: '192.0.2.0/25', port: 443 }, '/25:443'), policy({ cidr: '192.0.2.0/24' }, '/24')];
    assert.equal(winner(cidrs, { ip: '192.0.2.7', port: 80 }), '/24');
    assert.equal(winner(cidrs, { ip: '192.0.2.7', port: 443 }), '/25:443');
  });

  it('does not let a port lift a policy above a more specific kind or a longer prefix', () => {
    assert.equal(winner([policy({ host: '*.example.com', port: 443 }, 'wildcard:443'), policy({ host: 'a.example.com' }, 'host')], { host: 'a.example.com', port: 443 }), 'host');
    assert.equal(winner([policy({ cidr: '192.0.2.0/24', port: 443 }, '/24:443'), policy({ cidr: '192.0.2.0/25' }, '/25')], { ip: '192.0.2.7', port: 443 }), '/25');
    assert.equal(
      winner([policy({ host: '*.example.com', port: 443 }, 'two:443'), policy({ host: '*.a.example.com' }, 'three')], { host: 'x.a.example.com', port: 443 }),
      'three',
    );
  });
});

describe('PolicyMatcher: domain CONNECT uses the name and the resolved address', () => {
  it('lets the best of name and address win', () => {
    const host = policy({ host: 'www.example.com' }, 'host');
    const ip = policy({ host: '192.0.2.7' }, 'ip');
    const wildcard = policy({ host: '*.example.com' }, 'wildcard');
    const cidr = policy({ cidr: '192.0.2.0/24' }, 'cidr');
    const dest: Destination = { host: 'www.example.com', ip: '192.0.2.7', port: 443 };
    assert.equal(winner([ip, host], dest), 'host');
    assert.equal(winner([wildcard, ip], dest), 'ip');
    assert.equal(winner([cidr, wildcard], dest), 'wildcard');
    assert.equal(winner([cidr], dest), 'cidr');
    assert.equal(winner([host, cidr], { host: 'other.example.org', ip: '192.0.2.7', port: 443 }), 'cidr');
  });

  it('matches the address alone when the client sent an IP', () => {
    const ps = [policy({ host: 'www.example.com' }, 'host'), policy({ host: '*.example.com' }, 'wildcard'), policy({ cidr: '192.0.2.0/24' }, 'cidr')];
    assert.equal(winner(ps, { ip: '192.0.2.7', port: 443 }), 'cidr');
  });
});

describe('PolicyMatcher: address families', () => {
  it('matches IPv6 CIDRs, longer prefix first, in any text form', () => {
    const ps = [policy({ cidr: '2001:db8::/32' }, '/32'), policy({ cidr: '2001:db8:1::/48' }, '/48'), policy({ cidr: '::/0' }, '/0')];
    assert.equal(winner(ps, { ip: '2001:db8:1::5', port: 80 }), '/48');
    assert.equal(winner(ps, { ip: '2001:DB8:0001:0:0:0:0:5', port: 80 }), '/48');
    assert.equal(winner(ps, { ip: '2001:db8:2::5', port: 80 }), '/32');
    assert.equal(winner(ps, { ip: '2001:db9::1', port: 80 }), '/0');
  });

  it('matches an exact IPv6 address however it is written', () => {
    const ps = [policy({ host: '2001:DB8:0:0:0:0:0:1' }, 'exact'), policy({ cidr: '2001:db8::/32' }, '/32')];
    assert.equal(winner(ps, { ip: '2001:db8::1', port: 80 }), 'exact');
    assert.equal(winner([policy({ cidr: '2001:db8::1/128' }, 'exact128')], { ip: '2001:0db8::0001', port: 80 }), 'exact128');
  });

  it('keeps IPv4 and IPv6 policies apart', () => {
    assert.equal(winner([policy({ cidr: '0.0.0.0/0' })], { ip: '2001:db8::1', port: 80 }), null);
    assert.equal(winner([policy({ cidr: '::/0' })], { ip: '192.0.2.1', port: 80 }), null);
  });

  it('matches an IPv4-mapped IPv6 destination against IPv4 policies', () => {
    const ps = [policy({ cidr: '192.0.2.0/24' }, 'cidr'), policy({ host: '198.51.100.9' }, 'ip')];
    assert.equal(winner(ps, { ip: '::ffff:192.0.2.7', port: 80 }), 'cidr');
    assert.equal(winner(ps, { ip: '::FFFF:198.51.100.9', port: 80 }), 'ip');
    assert.equal(winner(ps, { ip: '::ffff:c000:207', port: 80 }), 'cidr');
  });

  it('matches an IPv4 destination against an IPv4-mapped IPv6 policy', () => {
    assert.equal(winner([policy({ cidr: '::ffff:192.0.2.0/120' }, 'mapped')], { ip: '192.0.2.9', port: 80 }), 'mapped');
    assert.equal(winner([policy({ host: '::ffff:192.0.2.9' }, 'mapped')], { ip: '192.0.2.9', port: 80 }), 'mapped');
    assert.equal(winner([policy({ cidr: '::ffff:192.0.2.0/120' }, 'mapped')], { ip: '192.0.3.9', port: 80 }), null);
  });
});

describe('PolicyMatcher: host names', () => {
  it('ignores case and a trailing dot, in the policy and in the destination', () => {
    const ps = [policy({ host: 'WWW.Example.COM.' }, 'host'), policy({ host: '*.Example.ORG.' }, 'wildcard')];
    for (const host of ['www.example.com', 'WWW.EXAMPLE.COM', 'www.example.com.', 'Www.Example.Com.']) {
      assert.equal(winner(ps, { host, port: 80 }), 'host', host);
    }
    for (const host of ['a.example.org', 'A.EXAMPLE.ORG.', 'x.y.Example.Org']) {
      assert.equal(winner(ps, { host, port: 80 }), 'wildcard', host);
    }
  });

  it('skips a stored policy whose match is invalid instead of failing every lookup', () => {
    const ps = [policy({ host: 'not a host' }, 'bad'), policy({ host: 'example.com' }, 'good')];
    assert.equal(winner(ps, { host: 'example.com', port: 80 }), 'good');
  });
});

describe('normalizeMatch', () => {
  it('names match.port for a port outside 1..65535 or not an integer', () => {
    for (const port of [0, -1, 65536, 1.5, Number.NaN]) {
      const e = normalizeMatch({ host: 'example.com', port });
      assert.equal(typeof e, 'string', String(port));
      assert.match(e as string, /^match\.port\b/);
    }
    assert.equal(normalized({ host: 'example.com', port: 65535 }).port, 65535);
    assert.equal(normalized({ host: 'example.com', port: 1 }).port, 1);
  });

  it('names match.cidr for a bad block', () => {
    for (const cidr of ['10.0.0.0/33', '2001:db8::/129', 'example.com/8', '10.0.0.0/', '10.0.0/8', '']) {
      const e = normalizeMatch({ cidr });
      assert.equal(typeof e, 'string', cidr);
      assert.match(e as string, /^match\.cidr\b/, cidr);
    }
  });

  it('names match.host for a bad name or wildcard', () => {
    for (const host of ['bad host', '*.', '*example.com', 'a.*.example.com', '*.*.example.com', 'a..b', '-a.example.com', '', 'x'.repeat(64) + '.com']) {
      const e = normalizeMatch({ host });
      assert.equal(typeof e, 'string', host);
      assert.match(e as string, /^match\.host\b/, host);
      if (host !== '') assert.ok((e as string).includes(host), `${e as string} should quote "${host}"`);
    }
  });

  it('asks for exactly one of host or cidr', () => {
    for (const m of [{}, { host: 'example.com', cidr: '10.0.0.0/8' }, { port: 80 }]) {
      const e = normalizeMatch(m);
      assert.equal(typeof e, 'string');
      assert.match(e as string, /host/);
      assert.match(e as string, /cidr/);
    }
  });

  it('canonicalizes so that two spellings of one match are the same policy (a duplicate)', () => {
    const same: Array<[PolicyMatch, PolicyMatch]> = [
      [{ host: '192.0.2.7' }, { cidr: '192.0.2.7/32' }],
      [{ cidr: '10.1.2.3/8' }, { cidr: '10.0.0.0/8' }],
      [{ host: 'Example.COM.' }, { host: 'example.com' }],
      [{ host: '*.Example.com' }, { host: '*.example.com.' }],
      [{ host: '2001:DB8:0:0:0:0:0:1' }, { cidr: '2001:db8::1/128' }],
      [{ cidr: '::ffff:10.0.0.0/104' }, { cidr: '10.0.0.0/8' }],
      [{ host: 'example.com', port: 443 }, { host: 'EXAMPLE.com', port: 443 }],
    ];
    for (const [a, b] of same) assert.equal(matchIdentity(normalized(a)), matchIdentity(normalized(b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    const different: Array<[PolicyMatch, PolicyMatch]> = [
      [{ host: 'example.com' }, { host: 'example.com', port: 443 }],
      [{ host: 'example.com' }, { host: '*.example.com' }],
      [{ cidr: '10.0.0.0/8' }, { cidr: '10.0.0.0/9' }],
    ];
    for (const [a, b] of different) assert.notEqual(matchIdentity(normalized(a)), matchIdentity(normalized(b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  });

  it('classifies each match by kind', () => {
    assert.deepEqual(
      [{ host: 'example.com' }, { host: '192.0.2.7' }, { cidr: '192.0.2.7/32' }, { host: '*.example.com' }, { cidr: '192.0.2.0/24' }].map((m) => normalized(m).kind),
      ['host', 'ip', 'ip', 'wildcard', 'cidr'],
    );
  });
});
