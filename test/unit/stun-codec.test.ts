import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  Attr,
  buildChannelData,
  checkFingerprint,
  checkMessageIntegrity,
  checkMessageIntegritySha256,
  decodeErrorCode,
  decodeString,
  decodeUint32,
  decodeUnknownAttributes,
  decodeXorAddress,
  frameLength,
  getAttr,
  HEADER_LENGTH,
  isComprehensionRequired,
  longTermKey,
  looksLikeStun,
  MAGIC_COOKIE,
  MAX_ATTRIBUTES,
  MAX_MESSAGE_LENGTH,
  parseChannelData,
  parseStun,
  saslprep,
  StunBuildError,
  StunClass,
  StunMessageBuilder,
  StunMethod,
  unknownComprehensionRequired,
  type StunIssue,
  type StunIssueCode,
  type StunMessage,
} from '../../src/codec/stun.js';
import type { Result } from '../../src/core/result.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 5769 section 2, byte for byte (one row = one 32-bit word of the RFC's figures)
const TID = hex('b7e7a701 bc34d686 fa87dfae');
const SAMPLE_REQUEST = hex(`
  00010058 2112a442 b7e7a701 bc34d686 fa87dfae
  80220010 5354554e 20746573 7420636c 69656e74
  00240004 6e0001ff
  80290008 932ff9b1 51263b36
  00060009 6576746a 3a683676 59202020
  00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
  80280004 e57a3bcf`);
const SAMPLE_IPV4_RESPONSE = hex(`
  0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200008 0001a147 e112a643
  00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
  80280004 c07d4c96`);
const SAMPLE_IPV6_RESPONSE = hex(`
  01010048 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
  00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
  80280004 c8fb0b4c`);
const LONG_TERM_TID = hex('78ad3433 c6ad72c0 29da412e');
const SAMPLE_LONG_TERM_REQUEST = hex(`
  00010060 2112a442 78ad3433 c6ad72c0 29da412e
  00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
  0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
  0014000b 6578616d 706c652e 6f726700
  00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666`);
// RFC 8489 appendix B.1 as corrected by erratum 6268: USERHASH, PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256
const SAMPLE_SHA256_REQUEST = hex(`
  00010090 2112a442 78ad3433 c6ad72c0 29da412e
  001e0020 4a3cf38f ef6992bd a952c678 0417da0f 24819415 569e60b2 05c46e41 407f1704
  00150029 6f624d61 744a6f73 32414141 43662f2f 3439396b 39353464 364f4c33 346f4c39 46535476 79363473 41000000
  0014000b 6578616d 706c652e 6f726700
  001d0004 00020000
  001c0020 b5c7bf00 5b6c52a2 1c51c5e8 92f81924 136296cb 927c4314 9309278c c6518e65`);

const SHORT_TERM_PASSWORD = Buffer.from('VOkJxbRl1RmTxUk/WvJxBt');
const MATRIX_USER = '\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9';
const MATRIX_PASSWORD = 'The\u00ADM\u00AAtr\u2168';

function parsed(buf: Buffer): StunMessage {
  const r = parseStun(buf);
  assert.ok(r.ok, `expected a message, got ${JSON.stringify(!r.ok && r.error)}`);
  return r.value;
}

function failure<T>(r: Result<T, StunIssue>, code: StunIssueCode): StunIssue {
  assert.ok(!r.ok, `expected ${code}, got a value`);
  assert.equal(r.error.code, code, r.error.message);
  assert.ok(r.error.message.length > 0);
  return r.error;
}

function value<T>(r: Result<T, StunIssue>): T {
  assert.ok(r.ok, `expected a value, got ${JSON.stringify(!r.ok && r.error)}`);
  return r.value;
}

const attrText = (m: StunMessage, type: number): string | undefined => getAttr(m, type)?.value.toString('utf8');

describe('RFC 5769 test vectors', () => {
  it('2.1 sample request: parses, and its short-term MESSAGE-INTEGRITY and FINGERPRINT verify', () => {
    const m = parsed(SAMPLE_REQUEST);
    assert.equal(m.method, StunMethod.Binding);
    assert.equal(m.cls, StunClass.Request);
    assert.deepEqual(m.transactionId, TID);
    assert.deepEqual(m.attributes.map((a) => a.type), [Attr.SOFTWARE, Attr.PRIORITY, Attr.ICE_CONTROLLED, Attr.USERNAME, Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT]);
    assert.equal(attrText(m, Attr.SOFTWARE), 'STUN test client');
    // the RFC pads USERNAME with spaces: the value is the 9 bytes, not the padding
    assert.equal(attrText(m, Attr.USERNAME), 'evtj:h6vY');
    assert.equal(value(decodeUint32(getAttr(m, Attr.PRIORITY)!.value)), 0x6e0001ff);
    assert.equal(checkMessageIntegrity(m, SHORT_TERM_PASSWORD), true);
    assert.equal(checkMessageIntegrity(m, Buffer.from('VOkJxbRl1RmTxUk/WvJxBT')), false);
    assert.equal(checkFingerprint(m), true);
  });

  it('2.2 IPv4 response: XOR-MAPPED-ADDRESS is 192.0.2.1:32853, integrity and fingerprint verify', () => {
    const m = parsed(SAMPLE_IPV4_RESPONSE);
    assert.equal(m.cls, StunClass.SuccessResponse);
    assert.equal(attrText(m, Attr.SOFTWARE), 'test vector');
    assert.deepEqual(value(decodeXorAddress(getAttr(m, Attr.XOR_MAPPED_ADDRESS)!.value, m.transactionId)), { family: 4, ip: '192.0.2.1', port: 32853 });
    assert.equal(checkMessageIntegrity(m, SHORT_TERM_PASSWORD), true);
    assert.equal(checkFingerprint(m), true);
  });

  it('2.3 IPv6 response: XOR-MAPPED-ADDRESS is [2001:db8:1234:5678:11:2233:4455:6677]:32853', () => {
    const m = parsed(SAMPLE_IPV6_RESPONSE);
    assert.deepEqual(value(decodeXorAddress(getAttr(m, Attr.XOR_MAPPED_ADDRESS)!.value, m.transactionId)), {
      family: 6,
      ip: '2001:db8:1234:5678:11:2233:4455:6677',
      port: 32853,
    });
    assert.equal(checkMessageIntegrity(m, SHORT_TERM_PASSWORD), true);
    assert.equal(checkFingerprint(m), true);
  });

  it('2.4 long-term request: verifies under MD5(SASLprep(user):realm:SASLprep(password))', () => {
    const m = parsed(SAMPLE_LONG_TERM_REQUEST);
    assert.equal(value(decodeString(Attr.USERNAME, getAttr(m, Attr.USERNAME)!.value)), MATRIX_USER);
    assert.equal(attrText(m, Attr.NONCE), 'f//499k954d6OL34oL9FSTvy64sA');
    assert.equal(attrText(m, Attr.REALM), 'example.org');
    assert.equal(value(saslprep(MATRIX_PASSWORD)), 'TheMatrIX');
    const key = longTermKey(MATRIX_USER, 'example.org', MATRIX_PASSWORD);
    assert.deepEqual(key, createHash('md5').update(`${MATRIX_USER}:example.org:TheMatrIX`).digest());
    assert.equal(checkMessageIntegrity(m, key), true);
    // without SASLprep the key differs and the request does not verify
    assert.equal(checkMessageIntegrity(m, createHash('md5').update(`${MATRIX_USER}:example.org:${MATRIX_PASSWORD}`).digest()), false);
    assert.equal(checkFingerprint(m), false, 'this vector has no FINGERPRINT');
  });

  it('RFC 8489 B.1 (erratum 6268): MESSAGE-INTEGRITY-SHA256 verifies under the SHA-256 long-term key', () => {
    const m = parsed(SAMPLE_SHA256_REQUEST);
    const key = longTermKey(MATRIX_USER, 'example.org', MATRIX_PASSWORD, 'sha256');
    assert.equal(checkMessageIntegritySha256(m, key), true);
    assert.equal(checkMessageIntegritySha256(m, longTermKey(MATRIX_USER, 'example.org', 'TheMatrix', 'sha256')), false);
    assert.equal(checkMessageIntegrity(m, key), false, 'no SHA-1 MESSAGE-INTEGRITY in it');
  });

  it('the builder reproduces the responses: same bytes wherever the RFC does not pad with spaces, and they verify', () => {
    for (const [rfc, ip] of [[SAMPLE_IPV4_RESPONSE, '192.0.2.1'], [SAMPLE_IPV6_RESPONSE, '2001:db8:1234:5678:11:2233:4455:6677']] as const) {
      const built = new StunMessageBuilder(StunMethod.Binding, StunClass.SuccessResponse, TID)
        .addString(Attr.SOFTWARE, 'test vector')
        .addXorAddress(Attr.XOR_MAPPED_ADDRESS, ip, 32853)
        .addMessageIntegrity(SHORT_TERM_PASSWORD)
        .addFingerprint()
        .build();
      assert.equal(built.length, rfc.length);
      // header, SOFTWARE up to its padding, and XOR-MAPPED-ADDRESS are the RFC's bytes
      const softwareEnd = HEADER_LENGTH + 4 + 11;
      assert.deepEqual(built.subarray(0, softwareEnd), rfc.subarray(0, softwareEnd));
      assert.equal(rfc[softwareEnd], 0x20, 'the RFC pads SOFTWARE with a space');
      assert.equal(built[softwareEnd], 0x00, 'we pad with zero');
      const xorStart = softwareEnd + 1;
      const xorEnd = xorStart + 4 + (ip.includes(':') ? 20 : 8);
      assert.deepEqual(built.subarray(xorStart, xorEnd), rfc.subarray(xorStart, xorEnd));
      const m = parsed(built);
      assert.equal(checkMessageIntegrity(m, SHORT_TERM_PASSWORD), true);
      assert.equal(checkFingerprint(m), true);
      assert.deepEqual(value(decodeXorAddress(getAttr(m, Attr.XOR_MAPPED_ADDRESS)!.value, m.transactionId)).ip, ip);
    }
  });

  it('the builder reproduces the long-term request byte for byte (its padding is zeros)', () => {
    const built = new StunMessageBuilder(StunMethod.Binding, StunClass.Request, LONG_TERM_TID)
      .addString(Attr.USERNAME, MATRIX_USER)
      .addString(Attr.NONCE, 'f//499k954d6OL34oL9FSTvy64sA')
      .addString(Attr.REALM, 'example.org')
      .addMessageIntegrity(longTermKey(MATRIX_USER, 'example.org', MATRIX_PASSWORD))
      .build();
    assert.deepEqual(built, SAMPLE_LONG_TERM_REQUEST);
  });
});

describe('integrity and fingerprint', () => {
  const key = Buffer.from('a long-term key, 16+ bytes');
  const signed = (): Buffer =>
    new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, Buffer.alloc(12, 7))
      .addUint32(Attr.REQUESTED_TRANSPORT, 17 << 24)
      .addString(Attr.USERNAME, 'alice')
      .addString(Attr.REALM, 'example.org')
      .addString(Attr.NONCE, 'nonce-1')
      .addMessageIntegrity(key)
      .addMessageIntegritySha256(key)
      .addFingerprint()
      .build();

  it('MESSAGE-INTEGRITY-SHA256 round-trips and a wrong key fails', () => {
    const m = parsed(signed());
    assert.equal(checkMessageIntegritySha256(m, key), true);
    assert.equal(checkMessageIntegrity(m, key), true);
    assert.equal(checkMessageIntegritySha256(m, Buffer.from('another key')), false);
  });

  it('a truncated MESSAGE-INTEGRITY-SHA256 (16 bytes) is accepted as RFC 8489 allows', () => {
    const tid = Buffer.alloc(12, 3);
    const header = new StunMessageBuilder(StunMethod.Binding, StunClass.Request, tid).addString(Attr.USERNAME, 'bob').build();
    const full = new StunMessageBuilder(StunMethod.Binding, StunClass.Request, tid).addString(Attr.USERNAME, 'bob').addMessageIntegritySha256(key).build();
    // recompute the MAC as a 16-byte attribute: the length field then covers 4 + 16 bytes
    const cover = Buffer.from(header);
    cover.writeUInt16BE(header.length - HEADER_LENGTH + 20, 2);
    const mac = createHmac('sha256', key).update(cover).digest().subarray(0, 16);
    const truncated = Buffer.concat([cover, hex('001c0010'), mac]);
    assert.equal(checkMessageIntegritySha256(parsed(truncated), key), true);
    assert.equal(checkMessageIntegritySha256(parsed(full), key), true);
  });

  it('a flipped bit anywhere fails the fingerprint, and anywhere it covers fails the integrity', () => {
    const msg = signed();
    const [sha1, sha256] = [Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256].map((t) => getAttr(parsed(msg), t)!);
    const sha1End = sha1!.offset + 4 + 20;
    const sha256End = sha256!.offset + 4 + 32;
    let parseFailures = 0;
    for (let bit = 0; bit < msg.length * 8; bit++) {
      const bad = Buffer.from(msg);
      bad[bit >> 3]! ^= 0x80 >> (bit & 7);
      const r = parseStun(bad);
      if (!r.ok) {
        parseFailures++;
        continue;
      }
      assert.equal(checkFingerprint(r.value), false, `bit ${bit} kept the fingerprint`);
      const byte = bit >> 3;
      if (byte < sha1End) assert.equal(checkMessageIntegrity(r.value, key), false, `bit ${bit} kept MESSAGE-INTEGRITY`);
      if (byte < sha256End) assert.equal(checkMessageIntegritySha256(r.value, key), false, `bit ${bit} kept MESSAGE-INTEGRITY-SHA256`);
    }
    assert.ok(parseFailures > 0 && parseFailures < msg.length * 8);
  });

  it('attributes after MESSAGE-INTEGRITY other than FINGERPRINT are ignored, so they cannot be smuggled in', () => {
    const tid = Buffer.alloc(12, 9);
    const honest = new StunMessageBuilder(StunMethod.Refresh, StunClass.Request, tid).addUint32(Attr.LIFETIME, 600).addMessageIntegrity(key).build();
    const tampered = Buffer.concat([honest, hex('000d0004 00000000')]);
    tampered.writeUInt16BE(tampered.length - HEADER_LENGTH, 2);
    const m = parsed(tampered);
    assert.equal(checkMessageIntegrity(m, key), true);
    assert.deepEqual(m.attributes.map((a) => a.type), [Attr.LIFETIME, Attr.MESSAGE_INTEGRITY]);
    assert.equal(value(decodeUint32(getAttr(m, Attr.LIFETIME)!.value)), 600);
  });

  it('FINGERPRINT must be last, and the builder refuses attributes after it or after integrity', () => {
    const b = new StunMessageBuilder(StunMethod.Binding, StunClass.Request, Buffer.alloc(12)).addMessageIntegrity(key);
    assert.throws(() => b.addString(Attr.SOFTWARE, 'x'), (e: unknown) => e instanceof StunBuildError && e.code === 'bad_order');
    b.addFingerprint();
    assert.throws(() => b.addMessageIntegritySha256(key), (e: unknown) => e instanceof StunBuildError && e.code === 'bad_order');
    assert.equal(checkFingerprint(parsed(b.build())), true);
  });
});

describe('attribute values', () => {
  const tid = hex('0102030405060708090a0b0c');

  it('XOR addresses round-trip for IPv4 and IPv6, including compressed forms; an IPv4-mapped IPv6 address goes out as IPv4', () => {
    const cases: Array<[string, number, string]> = [
      ['203.0.113.7', 3478, '203.0.113.7'],
      ['0.0.0.0', 0, '0.0.0.0'],
      ['255.255.255.255', 65535, '255.255.255.255'],
      ['2001:db8::1', 49152, '2001:db8::1'],
      ['::', 1, '::'],
      ['fe80:0:0:1::', 5349, 'fe80:0:0:1::'],
      ['2001:DB8:0:0:1:0:0:1', 80, '2001:db8::1:0:0:1'],
      ['::ffff:192.0.2.1', 443, '192.0.2.1'],
    ];
    for (const [ip, port, canonical] of cases) {
      for (const type of [Attr.XOR_MAPPED_ADDRESS, Attr.XOR_PEER_ADDRESS, Attr.XOR_RELAYED_ADDRESS]) {
        const m = parsed(new StunMessageBuilder(StunMethod.Allocate, StunClass.SuccessResponse, tid).addXorAddress(type, ip, port).build());
        const decoded = value(decodeXorAddress(getAttr(m, type)!.value, m.transactionId));
        assert.deepEqual(decoded, { family: canonical.includes(':') ? 6 : 4, ip: canonical, port }, ip);
      }
    }
  });

  it('bad XOR addresses are typed issues and a bad input to the builder is a StunBuildError', () => {
    failure(decodeXorAddress(hex('0003 0000 00000000'), tid), 'bad_family');
    failure(decodeXorAddress(hex('0001 0000 000000'), tid), 'bad_value');
    failure(decodeXorAddress(hex('0002 0000 00000000'), tid), 'bad_value');
    failure(decodeXorAddress(hex('00'), tid), 'bad_value');
    const b = new StunMessageBuilder(StunMethod.Binding, StunClass.SuccessResponse, tid);
    for (const [ip, port] of [['example.org', 1], ['1.2.3', 1], ['fe80::1%eth0', 1], ['1.2.3.4', 65536]] as const) {
      assert.throws(() => b.addXorAddress(Attr.XOR_MAPPED_ADDRESS, ip, port), (e: unknown) => e instanceof StunBuildError && e.code === 'bad_value');
    }
  });

  it('error codes carry the RFC reason phrases and round-trip', () => {
    const expected: Array<[number, string]> = [
      [400, 'Bad Request'], [401, 'Unauthorized'], [403, 'Forbidden'], [420, 'Unknown Attribute'], [437, 'Allocation Mismatch'],
      [438, 'Stale Nonce'], [440, 'Address Family not Supported'], [441, 'Wrong Credentials'], [442, 'Unsupported Transport Protocol'],
      [443, 'Peer Address Family Mismatch'], [486, 'Allocation Quota Reached'], [500, 'Server Error'], [508, 'Insufficient Capacity'],
    ];
    for (const [code, reason] of expected) {
      const m = parsed(new StunMessageBuilder(StunMethod.Allocate, StunClass.ErrorResponse, tid).addErrorCode(code).build());
      assert.equal(m.cls, StunClass.ErrorResponse);
      assert.deepEqual(value(decodeErrorCode(getAttr(m, Attr.ERROR_CODE)!.value)), { code, reason });
    }
    const custom = parsed(new StunMessageBuilder(StunMethod.Binding, StunClass.ErrorResponse, tid).addErrorCode(699, 'Ünïcode').build());
    assert.deepEqual(value(decodeErrorCode(getAttr(custom, Attr.ERROR_CODE)!.value)), { code: 699, reason: 'Ünïcode' });
    failure(decodeErrorCode(hex('00000200')), 'bad_value');
    failure(decodeErrorCode(hex('00000464')), 'bad_value');
    failure(decodeErrorCode(hex('000004')), 'bad_value');
    assert.throws(() => new StunMessageBuilder(1, StunClass.ErrorResponse, tid).addErrorCode(200), StunBuildError);
  });

  it('an unknown comprehension-required attribute is found and echoed in UNKNOWN-ATTRIBUTES', () => {
    const req = parsed(
      new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, tid)
        .addUint32(Attr.REQUESTED_TRANSPORT, 17 << 24)
        .add(0x7f01, Buffer.from('x'))
        .add(0xc001, Buffer.from('optional'))
        .add(0x7f01, Buffer.from('again'))
        .build(),
    );
    const unknown = unknownComprehensionRequired(req, new Set([Attr.REQUESTED_TRANSPORT]));
    assert.deepEqual(unknown, [0x7f01]);
    assert.equal(isComprehensionRequired(0x7fff), true);
    assert.equal(isComprehensionRequired(0x8000), false);
    const resp = parsed(new StunMessageBuilder(StunMethod.Allocate, StunClass.ErrorResponse, tid).addErrorCode(420).addUnknownAttributes([0x7f01, 0x0031, 0x0032]).build());
    assert.deepEqual(value(decodeUnknownAttributes(getAttr(resp, Attr.UNKNOWN_ATTRIBUTES)!.value)), [0x7f01, 0x0031, 0x0032]);
    failure(decodeUnknownAttributes(hex('000102')), 'bad_value');
  });

  it('text attributes are bounded as the RFC says, both ways', () => {
    const b = new StunMessageBuilder(StunMethod.Binding, StunClass.Request, tid);
    assert.throws(() => b.addString(Attr.REALM, 'r'.repeat(128)), (e: unknown) => e instanceof StunBuildError && e.code === 'too_long');
    assert.throws(() => b.addString(Attr.USERNAME, 'u'.repeat(509)), StunBuildError);
    b.addString(Attr.REALM, 'é'.repeat(127)).addString(Attr.USERNAME, 'u'.repeat(508));
    failure(decodeString(Attr.NONCE, Buffer.alloc(764, 0x61)), 'bad_value');
    failure(decodeString(Attr.USERNAME, hex('c3 28')), 'bad_value');
    assert.equal(value(decodeString(Attr.NONCE, Buffer.alloc(763, 0x61))).length, 763);
  });
});

describe('SASLprep', () => {
  it('maps soft hyphens and zero-width spaces to nothing, other spaces to SPACE, and NFKC-normalizes', () => {
    assert.equal(value(saslprep('I\u00ADX')), 'IX');
    assert.equal(value(saslprep('a\u200Bb')), 'ab');
    assert.equal(value(saslprep('a\u00A0b\u3000c')), 'a b c');
    assert.equal(value(saslprep('\u00AA')), 'a');
    assert.equal(value(saslprep('\u2168')), 'IX');
    assert.equal(value(saslprep('user')), 'user');
  });

  it('refuses controls, private use, lone surrogates, noncharacters and mixed-direction text', () => {
    for (const bad of ['a\u0007', 'a\u0085', '\uE000', 'a\uD800b', '\uFFFF', '\u{E0041}']) failure(saslprep(bad), 'prohibited_character');
    failure(saslprep('\u05D0a'), 'bad_bidi');
    failure(saslprep('\u05D01'), 'bad_bidi');
    assert.equal(value(saslprep('\u05D01\u05D1')), '\u05D01\u05D1');
  });

  it('a long-term key still comes out for a username SASLprep refuses (as peers that skip SASLprep do)', () => {
    assert.deepEqual(longTermKey('a\u0007', 'r', 'p'), createHash('md5').update('a\u0007:r:p').digest());
  });
});

describe('parser bounds', () => {
  const tid = Buffer.alloc(12, 1);
  const binding = (): Buffer => new StunMessageBuilder(StunMethod.Binding, StunClass.Request, tid).addString(Attr.SOFTWARE, 'edgeward').build();

  it('short, non-STUN and wrongly sized input are typed issues', () => {
    failure(parseStun(Buffer.alloc(19)), 'too_short');
    const notStun = binding();
    notStun[0] = 0x40;
    failure(parseStun(notStun), 'not_stun');
    const badCookie = binding();
    badCookie[4] = 0;
    failure(parseStun(badCookie), 'not_stun');
    assert.equal(looksLikeStun(binding()), true);
    assert.equal(looksLikeStun(badCookie), false);
    assert.equal(looksLikeStun(buildChannelData(0x4000, Buffer.alloc(40), false)), false);
  });

  it('a length field beyond the datagram, short of it, or not a multiple of 4 is bad_length', () => {
    const longer = binding();
    longer.writeUInt16BE(longer.readUInt16BE(2) + 4, 2);
    assert.match(failure(parseStun(longer), 'bad_length').message, /does not match/);
    failure(parseStun(Buffer.concat([binding(), Buffer.alloc(4)])), 'bad_length');
    const odd = binding();
    odd.writeUInt16BE(odd.readUInt16BE(2) - 2, 2);
    failure(parseStun(odd.subarray(0, odd.length - 2)), 'bad_length');
  });

  it('an attribute overrunning the message is bad_attribute', () => {
    const m = binding();
    m.writeUInt16BE(13, HEADER_LENGTH + 2);
    const e = failure(parseStun(m), 'bad_attribute');
    assert.equal(e.field, 'attributes[0]');
    assert.match(e.message, /SOFTWARE/);
  });

  it(`more than ${MAX_ATTRIBUTES} attributes is too_many_attributes; exactly ${MAX_ATTRIBUTES} parses`, () => {
    const build = (n: number): Buffer => {
      const b = new StunMessageBuilder(StunMethod.Binding, StunClass.Indication, tid);
      for (let i = 0; i < n; i++) b.add(0x8100 + i, Buffer.alloc(0));
      return b.build();
    };
    assert.equal(parsed(build(MAX_ATTRIBUTES)).attributes.length, MAX_ATTRIBUTES);
    failure(parseStun(build(MAX_ATTRIBUTES + 1)), 'too_many_attributes');
  });

  it('a message over the 16-bit length is refused by the parser and the builder', () => {
    const big = Buffer.alloc(MAX_MESSAGE_LENGTH + 1);
    big.writeUInt32BE(MAGIC_COOKIE, 4);
    failure(parseStun(big), 'too_long');
    const b = new StunMessageBuilder(StunMethod.Send, StunClass.Indication, tid).add(Attr.DATA, Buffer.alloc(65000));
    assert.throws(() => b.add(Attr.DATA, Buffer.alloc(600)), (e: unknown) => e instanceof StunBuildError && e.code === 'too_long');
    // the largest message the length field allows still parses
    const max = new StunMessageBuilder(StunMethod.Send, StunClass.Indication, tid).add(Attr.DATA, Buffer.alloc(MAX_MESSAGE_LENGTH - HEADER_LENGTH - 4)).build();
    assert.equal(parsed(max).raw.length, MAX_MESSAGE_LENGTH);
  });

  it('method and class round-trip through the type field for every TURN method and class', () => {
    for (const method of [...Object.values(StunMethod).filter((v): v is number => typeof v === 'number'), 0xfff]) {
      for (const cls of [StunClass.Request, StunClass.Indication, StunClass.SuccessResponse, StunClass.ErrorResponse]) {
        const m = parsed(new StunMessageBuilder(method, cls, tid).build());
        assert.deepEqual([m.method, m.cls], [method, cls]);
      }
    }
    // a Binding success response is type 0x0101 on the wire
    assert.equal(new StunMessageBuilder(StunMethod.Binding, StunClass.SuccessResponse, tid).build().readUInt16BE(0), 0x0101);
  });
});

describe('ChannelData and stream framing', () => {
  it('frameLength cuts STUN messages and padded ChannelData out of a TCP stream', () => {
    const stun = new StunMessageBuilder(StunMethod.Refresh, StunClass.Request, Buffer.alloc(12)).addUint32(Attr.LIFETIME, 0).build();
    const channel = buildChannelData(0x4001, Buffer.from('hello'), true);
    assert.equal(channel.length, 12, '4 + 5 bytes padded to 12');
    const stream = Buffer.concat([stun, channel, stun]);
    const frames: Buffer[] = [];
    let rest = stream;
    for (;;) {
      const n = frameLength(rest);
      if (n === 'more') break;
      assert.equal(typeof n, 'number');
      if (typeof n !== 'number' || rest.length < n) break;
      frames.push(rest.subarray(0, n));
      rest = rest.subarray(n);
    }
    assert.equal(rest.length, 0);
    assert.deepEqual(frames.map((f) => f.length), [stun.length, 12, stun.length]);
    assert.deepEqual(value(parseChannelData(frames[1]!)), { channel: 0x4001, data: Buffer.from('hello') });
    assert.equal(parsed(frames[2]!).method, StunMethod.Refresh);
  });

  it('frameLength asks for more until it can decide, and refuses what is neither STUN nor ChannelData', () => {
    const stun = new StunMessageBuilder(StunMethod.Binding, StunClass.Request, Buffer.alloc(12)).build();
    for (let n = 0; n < 8; n++) assert.equal(frameLength(stun.subarray(0, n)), 'more');
    assert.equal(frameLength(stun.subarray(0, 8)), HEADER_LENGTH);
    assert.equal(frameLength(hex('40')), 'more');
    assert.equal(frameLength(hex('4fff0000')), 4);
    assert.equal((frameLength(hex('80')) as StunIssue).code, 'not_stun');
    assert.equal(frameLength(hex('7fff 0004')), 8, 'channel 0x7fff, 4 bytes of data');
    assert.equal((frameLength(hex('0001 0002 2112a442')) as StunIssue).code, 'bad_length');
    assert.equal((frameLength(hex('0001 0000 00000000')) as StunIssue).code, 'not_stun');
  });

  it('ChannelData over UDP: padding optional, the length must fit, channels are 0x4000-0x7fff (RFC 5766, as coturn\'s clients use)', () => {
    const data = Buffer.from('abcde');
    const unpadded = buildChannelData(0x4000, data, false);
    assert.equal(unpadded.length, 9);
    assert.deepEqual(value(parseChannelData(unpadded)), { channel: 0x4000, data });
    assert.deepEqual(value(parseChannelData(buildChannelData(0x4fff, data, true))).channel, 0x4fff);
    failure(parseChannelData(unpadded.subarray(0, 8)), 'bad_length');
    failure(parseChannelData(Buffer.concat([buildChannelData(0x4000, data, true), Buffer.alloc(4)])), 'bad_length');
    failure(parseChannelData(hex('3fff0000')), 'bad_channel');
    assert.equal(value(parseChannelData(hex('7fff0000'))).channel, 0x7fff);
    assert.equal(value(parseChannelData(hex('72bc0000'))).channel, 0x72bc);
    failure(parseChannelData(hex('4000')), 'too_short');
    assert.throws(() => buildChannelData(0x8000, data, false), StunBuildError);
    assert.throws(() => buildChannelData(0x3fff, data, false), StunBuildError);
  });
});
