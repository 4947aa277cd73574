import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AuthMethod,
  buildReply,
  buildSocks4Reply,
  buildUdpDatagram,
  encodeAddress,
  isParseError,
  parseCredentials,
  parseGreeting,
  parseRequest,
  parseSocks4Request,
  parseUdpDatagram,
  Socks4Reply,
  Socks5Command,
  Socks5Reply,
  type ParseError,
  type ParseErrorCode,
  type Parsed,
} from '../../src/codec/socks.js';

const bytes = (...parts: Array<number | string | Buffer | number[]>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

const port = (n: number): number[] => [n >> 8, n & 0xff];

const V6_2001_DB8_1 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/** The error a parser returned; fails when it returned anything else. */
function parseError<T>(r: Parsed<T> | T | ParseError): ParseError {
  assert.ok(typeof r === 'object' && r !== null && 'error' in r, `expected a ParseError, got ${JSON.stringify(r)}`);
  return r as ParseError;
}

function parsedValue<T>(r: Parsed<T>): { value: T; consumed: number } {
  assert.ok(r !== 'more' && !isParseError(r), `expected a value, got ${JSON.stringify(r)}`);
  return r;
}

/** Every strict prefix of a valid message is 'more': a parser never decides on a partial message. */
function assertEveryPrefixIsMore<T>(parse: (b: Buffer) => Parsed<T>, msg: Buffer): void {
  for (let n = 0; n < msg.length; n++) {
    assert.equal(parse(msg.subarray(0, n)), 'more', `prefix of ${n}/${msg.length} bytes of ${msg.toString('hex')}`);
  }
  const whole = parsedValue(parse(msg));
  assert.equal(whole.consumed, msg.length);
}

describe('parseGreeting', () => {
  it('reads the offered authentication methods', () => {
    const r = parsedValue(parseGreeting(bytes(5, 2, AuthMethod.NO_AUTH, AuthMethod.USERNAME_PASSWORD)));
    assert.deepEqual(r, { value: { methods: [0, 2] }, consumed: 4 });
  });

  it('leaves bytes after the greeting for the next message', () => {
    const r = parsedValue(parseGreeting(bytes(5, 1, 0, 5, 1, 0)));
    assert.deepEqual(r, { value: { methods: [0] }, consumed: 3 });
  });

  it('refuses another protocol version and an empty method list', () => {
    const v = parseError(parseGreeting(bytes(4, 1, 0)));
    assert.equal(v.error, 'bad_version');
    assert.match(v.message, /version 4 is not 5/);
    assert.equal(parseError(parseGreeting(bytes(5, 0))).error, 'no_methods');
  });

  it("returns 'more' for every strict prefix", () => {
    assertEveryPrefixIsMore(parseGreeting, bytes(5, 3, 0, 1, 2));
    const all = bytes(5, 255, Array.from({ length: 255 }, (_, i) => i));
    assertEveryPrefixIsMore(parseGreeting, all);
  });
});

describe('parseCredentials', () => {
  it('reads username and password (RFC 1929), as UTF-8', () => {
    const user = Buffer.from('jürgen', 'utf8');
    const r = parsedValue(parseCredentials(bytes(1, user.length, user, 6, 's3cr:t')));
    assert.deepEqual(r.value, { username: 'jürgen', password: 's3cr:t' });
    assert.equal(r.consumed, 2 + user.length + 1 + 6);
  });

  it('accepts empty username and password', () => {
    assert.deepEqual(parseCredentials(bytes(1, 0, 0)), { value: { username: '', password: '' }, consumed: 3 });
  });

  it('refuses a sub-negotiation version other than 1', () => {
    const e = parseError(parseCredentials(bytes(5, 1, 'a', 1, 'b')));
    assert.equal(e.error, 'bad_version');
    assert.match(e.message, /version 5 is not 1/);
  });

  it("returns 'more' for every strict prefix", () => {
    assertEveryPrefixIsMore(parseCredentials, bytes(1, 5, 'alice', 6, 'secret'));
    assertEveryPrefixIsMore(parseCredentials, bytes(1, 255, 'u'.repeat(255), 255, 'p'.repeat(255)));
    assertEveryPrefixIsMore(parseCredentials, bytes(1, 0, 0));
  });
});

describe('parseRequest', () => {
  it('reads a CONNECT to an IPv4 address', () => {
    const r = parseRequest(bytes(5, Socks5Command.CONNECT, 0, 1, [192, 0, 2, 7], port(443)));
    assert.deepEqual(r, { value: { command: Socks5Command.CONNECT, address: { ip: '192.0.2.7', port: 443 } }, consumed: 10 });
  });

  it('reads an IPv6 address in canonical text', () => {
    const r = parseRequest(bytes(5, Socks5Command.CONNECT, 0, 4, V6_2001_DB8_1, port(80)));
    assert.deepEqual(r, { value: { command: Socks5Command.CONNECT, address: { ip: '2001:db8::1', port: 80 } }, consumed: 22 });
  });

  it('reads a domain name, lower-cased', () => {
    const r = parseRequest(bytes(5, Socks5Command.CONNECT, 0, 3, 11, 'Example.COM', port(8080)));
    assert.deepEqual(r, { value: { command: Socks5Command.CONNECT, address: { host: 'example.com', port: 8080 } }, consumed: 18 });
  });

  it('treats an IP literal in a domain field (bare or bracketed) as that address', () => {
    const v4 = parsedValue(parseRequest(bytes(5, 1, 0, 3, 9, '192.0.2.7', port(80))));
    assert.deepEqual(v4.value.address, { ip: '192.0.2.7', port: 80 });
    const v6 = parsedValue(parseRequest(bytes(5, 1, 0, 3, 13, '[2001:db8::1]', port(443))));
    assert.deepEqual(v6.value.address, { ip: '2001:db8::1', port: 443 });
    const bare6 = parsedValue(parseRequest(bytes(5, 1, 0, 3, 3, '::1', port(22))));
    assert.deepEqual(bare6.value.address, { ip: '::1', port: 22 });
  });

  it('accepts BIND and UDP ASSOCIATE', () => {
    for (const cmd of [Socks5Command.BIND, Socks5Command.UDP_ASSOCIATE]) {
      assert.equal(parsedValue(parseRequest(bytes(5, cmd, 0, 1, [0, 0, 0, 0], port(0)))).value.command, cmd);
    }
  });

  it('answers a wrong version with general failure', () => {
    const e = parseError(parseRequest(bytes(4, 1, 0, 1, [192, 0, 2, 7], port(80))));
    assert.equal(e.error, 'bad_version');
    assert.equal(e.reply, Socks5Reply.GENERAL_FAILURE);
  });

  it('answers an unknown command with COMMAND_NOT_SUPPORTED (7)', () => {
    for (const cmd of [0, 4, 0xff]) {
      const e = parseError(parseRequest(bytes(5, cmd, 0, 1, [192, 0, 2, 7], port(80))));
      assert.equal(e.error, 'bad_command');
      assert.equal(e.reply, Socks5Reply.COMMAND_NOT_SUPPORTED);
      assert.equal(e.reply, 7);
      assert.match(e.message, new RegExp(`command ${cmd}\\b`));
    }
  });

  it('answers an unknown address type with ADDRESS_TYPE_NOT_SUPPORTED (8), as soon as the type byte arrives', () => {
    for (const atyp of [0, 2, 5, 0xff]) {
      const e = parseError(parseRequest(bytes(5, 1, 0, atyp)));
      assert.equal(e.error, 'bad_address_type');
      assert.equal(e.reply, Socks5Reply.ADDRESS_TYPE_NOT_SUPPORTED);
      assert.equal(e.reply, 8);
    }
  });

  it('refuses an empty domain name with host unreachable', () => {
    const e = parseError(parseRequest(bytes(5, 1, 0, 3, 0, port(80))));
    assert.equal(e.error, 'bad_domain');
    assert.equal(e.reply, Socks5Reply.HOST_UNREACHABLE);
    assert.match(e.message, /empty/);
  });

  it('refuses control, space and non-ASCII bytes in a domain name', () => {
    for (const name of ['exa\nmple.com', 'a b.com', 'evil\x00.com', 'tab\t', 'caf\xe9.com', '\x7f.com']) {
      const e = parseError(parseRequest(bytes(5, 1, 0, 3, name.length, name, port(80))));
      assert.equal(e.error, 'bad_domain', JSON.stringify(name));
      assert.equal(e.reply, Socks5Reply.HOST_UNREACHABLE);
    }
  });

  it('does not consume bytes that follow the request (early data)', () => {
    const req = bytes(5, 1, 0, 3, 7, 'a.b.com', port(80));
    const r = parsedValue(parseRequest(Buffer.concat([req, Buffer.from('GET / HTTP/1.1\r\n')])));
    assert.equal(r.consumed, req.length);
    assert.deepEqual(r.value.address, { host: 'a.b.com', port: 80 });
  });

  it("returns 'more' for every strict prefix (IPv4, IPv6, domain, longest domain, bad command)", () => {
    assertEveryPrefixIsMore(parseRequest, bytes(5, 1, 0, 1, [192, 0, 2, 7], port(443)));
    assertEveryPrefixIsMore(parseRequest, bytes(5, 1, 0, 4, V6_2001_DB8_1, port(443)));
    assertEveryPrefixIsMore(parseRequest, bytes(5, 3, 0, 3, 11, 'example.com', port(53)));
    assertEveryPrefixIsMore(parseRequest, bytes(5, 1, 0, 3, 255, 'a'.repeat(255), port(1)));
    // a bad command is only reported once the whole request is in, so it is never 'more' too early
    const badCmd = bytes(5, 9, 0, 1, [192, 0, 2, 7], port(443));
    for (let n = 0; n < badCmd.length; n++) assert.equal(parseRequest(badCmd.subarray(0, n)), 'more', `prefix ${n}`);
    assert.equal(parseError(parseRequest(badCmd)).reply, Socks5Reply.COMMAND_NOT_SUPPORTED);
  });
});

describe('parseSocks4Request', () => {
  it('reads a SOCKS4 CONNECT with its user id', () => {
    const r = parseSocks4Request(bytes(4, 1, port(80), [192, 0, 2, 7], 'bob', 0));
    assert.deepEqual(r, { value: { command: 1, address: { ip: '192.0.2.7', port: 80 }, userId: 'bob' }, consumed: 12 });
  });

  it('reads a SOCKS4a request (DSTIP 0.0.0.x) with a host name, lower-cased', () => {
    const r = parseSocks4Request(bytes(4, 1, port(443), [0, 0, 0, 1], 0, 'Example.COM', 0));
    assert.deepEqual(r, { value: { command: 1, address: { host: 'example.com', port: 443 }, userId: '' }, consumed: 21 });
  });

  it('treats an IP literal sent as a SOCKS4a host name as that address', () => {
    const r = parsedValue(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 9], 'u', 0, '192.0.2.9', 0)));
    assert.deepEqual(r.value.address, { ip: '192.0.2.9', port: 80 });
  });

  it('treats DSTIP 0.0.0.0 as a plain SOCKS4 address, not SOCKS4a', () => {
    const r = parsedValue(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 0], 0, 'host.example', 0)));
    assert.deepEqual(r.value.address, { ip: '0.0.0.0', port: 80 });
    assert.equal(r.consumed, 9);
  });

  it('refuses another version, and an empty or unprintable SOCKS4a host', () => {
    assert.equal(parseError(parseSocks4Request(bytes(5, 1, port(80), [192, 0, 2, 7], 0))).error, 'bad_version');
    assert.equal(parseError(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 1], 0, 0))).error, 'bad_domain');
    assert.equal(parseError(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 1], 0, 'a b', 0))).error, 'bad_domain');
  });

  it('waits for a user id of up to 255 bytes and refuses a longer one still missing its NUL', () => {
    assert.equal(parseSocks4Request(bytes(4, 1, port(80), [192, 0, 2, 7], 'u'.repeat(255))), 'more');
    const e = parseError(parseSocks4Request(bytes(4, 1, port(80), [192, 0, 2, 7], 'u'.repeat(256))));
    assert.equal(e.error, 'too_long');
    assert.match(e.message, /user id/);
    assert.equal(parsedValue(parseSocks4Request(bytes(4, 1, port(80), [192, 0, 2, 7], 'u'.repeat(255), 0))).value.userId.length, 255);
  });

  it('waits for a SOCKS4a host of up to 255 bytes and refuses a longer one still missing its NUL', () => {
    assert.equal(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 1], 0, 'h'.repeat(255))), 'more');
    const e = parseError(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 1], 0, 'h'.repeat(256))));
    assert.equal(e.error, 'too_long');
    assert.match(e.message, /host name/);
  });

  // The 255-byte limit must not depend on how the bytes were split into TCP segments.
  it('refuses a user id longer than 255 bytes even when its NUL arrived in the same read', () => {
    const e = parseError(parseSocks4Request(bytes(4, 1, port(80), [192, 0, 2, 7], 'u'.repeat(300), 0)));
    assert.equal(e.error, 'too_long');
  });

  it('refuses a SOCKS4a host longer than 255 bytes even when its NUL arrived in the same read', () => {
    const e = parseError(parseSocks4Request(bytes(4, 1, port(80), [0, 0, 0, 1], 0, 'h'.repeat(300), 0)));
    assert.equal(e.error, 'too_long');
  });

  it("returns 'more' for every strict prefix (SOCKS4, SOCKS4a, longest fields)", () => {
    assertEveryPrefixIsMore(parseSocks4Request, bytes(4, 1, port(80), [192, 0, 2, 7], 'bob', 0));
    assertEveryPrefixIsMore(parseSocks4Request, bytes(4, 1, port(80), [192, 0, 2, 7], 0));
    assertEveryPrefixIsMore(parseSocks4Request, bytes(4, 1, port(443), [0, 0, 0, 1], 'bob', 0, 'example.com', 0));
    assertEveryPrefixIsMore(parseSocks4Request, bytes(4, 1, port(443), [0, 0, 0, 1], 'u'.repeat(255), 0, 'h'.repeat(255), 0));
  });
});

describe('encodeAddress and buildReply', () => {
  it('builds an IPv4 reply: VER REP RSV ATYP ADDR PORT', () => {
    assert.deepEqual(buildReply(Socks5Reply.SUCCEEDED, '192.0.2.7', 1080), bytes(5, 0, 0, 1, [192, 0, 2, 7], port(1080)));
  });

  it('uses 0.0.0.0:0 when a failure reply has no address', () => {
    assert.deepEqual(buildReply(Socks5Reply.CONNECTION_REFUSED), bytes(5, 5, 0, 1, [0, 0, 0, 0], 0, 0));
  });

  it('encodes IPv6 addresses in every text form, including compressed ones', () => {
    const cases: Array<[string, number[]]> = [
      ['::1', [...Array<number>(15).fill(0), 1]],
      ['::', Array<number>(16).fill(0)],
      ['2001:db8::1', V6_2001_DB8_1],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', V6_2001_DB8_1],
      ['2001:DB8::1', V6_2001_DB8_1],
      ['fe80::', [0xfe, 0x80, ...Array<number>(14).fill(0)]],
      ['2001:db8:1:2:3:4:5:6', [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6]],
    ];
    for (const [text, expect] of cases) {
      assert.deepEqual(encodeAddress(text, 443), bytes(4, expect, port(443)), text);
      assert.deepEqual(buildReply(Socks5Reply.SUCCEEDED, text, 443), bytes(5, 0, 0, 4, expect, port(443)), text);
    }
  });

  it('encodes an IPv6 address with an embedded IPv4 tail (NAT64 64:ff9b::/96) by its value', () => {
    const expect = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 33];
    assert.equal(encodeAddress('64:ff9b::192.0.2.33', 53).toString('hex'), bytes(4, expect, port(53)).toString('hex'));
  });

  it('encodes an IPv4-mapped IPv6 address as IPv4', () => {
    assert.deepEqual(encodeAddress('::ffff:192.0.2.7', 80), bytes(1, [192, 0, 2, 7], port(80)));
    assert.deepEqual(buildReply(Socks5Reply.SUCCEEDED, '::FFFF:127.0.0.1', 1080), bytes(5, 0, 0, 1, [127, 0, 0, 1], port(1080)));
  });

  it('encodes a domain name with its length', () => {
    assert.deepEqual(encodeAddress(undefined, 80, 'example.com'), bytes(3, 11, 'example.com', port(80)));
  });

  it('builds a SOCKS4 reply: VN=0 CD PORT IP', () => {
    assert.deepEqual(buildSocks4Reply(Socks4Reply.GRANTED, '192.0.2.7', 80), bytes(0, 0x5a, port(80), [192, 0, 2, 7]));
    assert.deepEqual(buildSocks4Reply(Socks4Reply.REJECTED), bytes(0, 0x5b, 0, 0, 0, 0, 0, 0));
  });
});

describe('UDP datagrams', () => {
  it('round-trips address, port and payload through build and parse', () => {
    const payload = Buffer.from('dns query \x00\xff', 'latin1');
    const cases: Array<[string, string]> = [
      ['192.0.2.7', '192.0.2.7'],
      ['2001:db8::1', '2001:db8::1'],
      ['2001:0DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['::1', '::1'],
      ['::ffff:192.0.2.7', '192.0.2.7'],
    ];
    for (const [ip, canonical] of cases) {
      const d = parseUdpDatagram(buildUdpDatagram(ip, 5353, payload));
      assert.ok(!('error' in d), `${ip}: ${JSON.stringify(d)}`);
      assert.deepEqual(d.address, { ip: canonical, port: 5353 }, ip);
      assert.deepEqual(d.data, payload, ip);
    }
  });

  it('round-trips an empty payload', () => {
    const d = parseUdpDatagram(buildUdpDatagram('192.0.2.7', 53, Buffer.alloc(0)));
    assert.ok(!('error' in d));
    assert.equal(d.data.length, 0);
  });

  it('reads a datagram addressed to a domain name', () => {
    const d = parseUdpDatagram(bytes(0, 0, 0, 3, 11, 'Example.com', port(53), 'q'));
    assert.ok(!('error' in d));
    assert.deepEqual(d.address, { host: 'example.com', port: 53 });
    assert.deepEqual(d.data, Buffer.from('q'));
  });

  it('rejects fragments (FRAG != 0)', () => {
    for (const frag of [1, 0x7f, 0x81]) {
      const e = parseError(parseUdpDatagram(bytes(0, 0, frag, 1, [192, 0, 2, 7], port(53), 'x')));
      assert.equal(e.error, 'fragmented');
    }
  });

  it('rejects non-zero reserved bytes, a truncated header and a bad address type', () => {
    assert.equal(parseError(parseUdpDatagram(bytes(0, 1, 0, 1, [192, 0, 2, 7], port(53)))).error, 'bad_reserved');
    const header = bytes(0, 0, 0, 4, V6_2001_DB8_1, port(53));
    for (let n = 0; n < header.length; n++) {
      const r = parseUdpDatagram(header.subarray(0, n));
      assert.ok('error' in r, `truncated header of ${n} bytes must be an error, got ${JSON.stringify(r)}`);
    }
    assert.equal(parseError(parseUdpDatagram(bytes(0, 0, 0, 9, [1, 2, 3, 4], port(53)))).error, 'bad_address_type');
  });
});

// ---- robustness: random and mutated input never throws and always yields a well-formed answer ----

/** mulberry32: a small seeded PRNG, so a failure is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ERROR_CODES: readonly ParseErrorCode[] = ['bad_version', 'no_methods', 'bad_command', 'bad_address_type', 'bad_reserved', 'bad_domain', 'too_long', 'fragmented'];
const REPLIES = new Set(Object.values(Socks5Reply).filter((v): v is number => typeof v === 'number'));

function checkError(e: ParseError, where: string): void {
  assert.ok(ERROR_CODES.includes(e.error), `${where}: unknown error code ${String(e.error)}`);
  assert.equal(typeof e.message, 'string', where);
  assert.ok(e.message.length > 0, where);
  if (e.reply !== undefined) assert.ok(REPLIES.has(e.reply), `${where}: reply ${e.reply}`);
}

type StreamParser = (b: Buffer) => Parsed<unknown>;
/** Gives a random buffer a plausible header, so that the fuzz gets past the first checks. */
type Shape = (b: Buffer, rand: () => number) => void;
const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const STREAM_PARSERS: Array<[string, StreamParser, Shape]> = [
  ['parseGreeting', parseGreeting, (b) => (b[0] = 5)],
  ['parseCredentials', parseCredentials, (b) => (b[0] = 1)],
  [
    'parseRequest',
    parseRequest,
    (b, rand) => {
      b[0] = 5;
      if (b.length > 1) b[1] = pick(rand, [1, 2, 3, 9]);
      if (b.length > 2) b[2] = 0;
      if (b.length > 3) b[3] = pick(rand, [1, 3, 4, 7]);
      if (b.length > 4 && b[3] === 3 && rand() < 0.5) b[4] = Math.floor(rand() * Math.max(1, b.length - 6));
    },
  ],
  [
    'parseSocks4Request',
    parseSocks4Request,
    (b, rand) => {
      b[0] = 4;
      if (b.length > 7 && rand() < 0.5) b.fill(0, 4, 7); // SOCKS4a
    },
  ],
];
const shapeUdp: Shape = (b, rand) => {
  b.fill(0, 0, Math.min(3, b.length));
  if (b.length > 3) b[3] = pick(rand, [1, 3, 4, 7]);
};

function checkStream(name: string, parse: StreamParser, buf: Buffer): void {
  const where = `${name}(${buf.toString('hex')})`;
  let r: Parsed<unknown>;
  try {
    r = parse(buf);
  } catch (e) {
    assert.fail(`${where} threw ${(e as Error).stack ?? String(e)}`);
  }
  if (r === 'more') return;
  if (isParseError(r)) return checkError(r, where);
  assert.ok(Number.isInteger(r.consumed) && r.consumed > 0 && r.consumed <= buf.length, `${where}: consumed ${r.consumed}`);
  // the answer depends only on the bytes consumed, not on what follows them
  assert.deepEqual(parse(buf.subarray(0, r.consumed)), r, `${where}: trailing bytes changed the result`);
}

function checkUdp(buf: Buffer): void {
  const where = `parseUdpDatagram(${buf.toString('hex')})`;
  let r: ReturnType<typeof parseUdpDatagram>;
  try {
    r = parseUdpDatagram(buf);
  } catch (e) {
    assert.fail(`${where} threw ${(e as Error).stack ?? String(e)}`);
  }
  if ('error' in r) return checkError(r, where);
  assert.ok(r.data.length <= buf.length - 4, where);
  assert.ok((r.address.ip === undefined) !== (r.address.host === undefined), `${where}: exactly one of ip or host`);
  assert.ok(Number.isInteger(r.address.port) && r.address.port >= 0 && r.address.port <= 65535, where);
}

function randomBuffer(rand: () => number, maxLen: number, shape?: Shape): Buffer {
  const len = Math.floor(rand() * (maxLen + 1));
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = Math.floor(rand() * 256);
  // half the time, a plausible header, so the parser gets past its first checks
  if (shape && len > 0 && rand() < 0.5) shape(b, rand);
  return b;
}

const VALID_MESSAGES: Array<[StreamParser | 'udp', Buffer]> = [
  [parseGreeting, bytes(5, 2, 0, 2)],
  [parseCredentials, bytes(1, 5, 'alice', 6, 'secret')],
  [parseRequest, bytes(5, 1, 0, 1, [192, 0, 2, 7], port(443))],
  [parseRequest, bytes(5, 1, 0, 4, V6_2001_DB8_1, port(443))],
  [parseRequest, bytes(5, 3, 0, 3, 11, 'example.com', port(53))],
  [parseSocks4Request, bytes(4, 1, port(80), [192, 0, 2, 7], 'bob', 0)],
  [parseSocks4Request, bytes(4, 1, port(443), [0, 0, 0, 1], 'bob', 0, 'example.com', 0)],
  ['udp', bytes(0, 0, 0, 1, [192, 0, 2, 7], port(53), 'payload')],
  ['udp', bytes(0, 0, 0, 3, 11, 'example.com', port(53), 'payload')],
];

function mutate(rand: () => number, msg: Buffer): Buffer {
  const out = Buffer.from(msg);
  const kind = Math.floor(rand() * 4);
  if (kind === 0) {
    // flip a few bytes
    const n = 1 + Math.floor(rand() * 3);
    for (let i = 0; i < n && out.length > 0; i++) out[Math.floor(rand() * out.length)] = Math.floor(rand() * 256);
    return out;
  }
  if (kind === 1) return out.subarray(0, Math.floor(rand() * out.length)); // truncate
  if (kind === 2) return Buffer.concat([out, randomBuffer(rand, 40)]); // append junk
  // set a length or address-type byte to an extreme value
  if (out.length > 1) out[1 + Math.floor(rand() * Math.min(out.length - 1, 5))] = [0, 1, 2, 3, 4, 0x7f, 0xff][Math.floor(rand() * 7)]!;
  return out;
}

describe('parsers on hostile input', () => {
  it('never throw on 20000 random buffers of 0..300 bytes, and answer more, a typed error, or a value within the buffer', () => {
    const rand = prng(0x5eed5);
    for (let i = 0; i < 20000; i++) {
      for (const [name, parse, shape] of STREAM_PARSERS) checkStream(name, parse, randomBuffer(rand, 300, shape));
      checkUdp(randomBuffer(rand, 300, shapeUdp));
    }
  });

  it('never throw on 20000 mutations of valid messages', () => {
    const rand = prng(0xc0dec);
    for (let i = 0; i < 20000; i++) {
      const [parse, msg] = VALID_MESSAGES[i % VALID_MESSAGES.length]!;
      const m = mutate(rand, msg);
      if (parse === 'udp') checkUdp(m);
      else for (const [name, p] of STREAM_PARSERS) checkStream(name, p, m);
    }
  });
});
