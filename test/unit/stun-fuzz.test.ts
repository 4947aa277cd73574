// Mutation fuzzing of the STUN/TURN parsers (issue 8: "the parser takes 1 000 000 mutated messages with
// no crash"). Seeds are the RFC 5769 vectors and builder-made TURN requests; every mutated input goes
// through parseStun, frameLength and parseChannelData, and whatever comes back must lie inside the input.
// Then 200 000 more through the server itself (StunServer.answer and the TURN handler): no throw, and
// every answer is a STUN response carrying its request's transaction id.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Attr,
  buildChannelData,
  CHANNEL_MAX,
  CHANNEL_MIN,
  checkFingerprint,
  checkMessageIntegrity,
  checkMessageIntegritySha256,
  decodeErrorCode,
  decodeString,
  decodeUnknownAttributes,
  decodeXorAddress,
  frameLength,
  HEADER_LENGTH,
  MAX_ATTRIBUTES,
  MAX_MESSAGE_LENGTH,
  parseChannelData,
  parseStun,
  StunClass,
  StunMessageBuilder,
  StunMethod,
  type StunIssueCode,
} from '../../src/codec/stun.js';
import { silentLogger } from '../../src/log/logger.js';
import { PeerPolicy } from '../../src/rendezvous/peer-policy.js';
import { newStunCounters, StunServer } from '../../src/rendezvous/stun-server.js';
import { TurnHandler } from '../../src/rendezvous/turn-handler.js';

/** Mutated inputs in all; each goes through parseStun, frameLength and parseChannelData. */
const FUZZ_ITERATIONS = 1_000_000;
const FUZZ_SEED = 0x5354554e;
/** Mutated inputs through the whole server (StunServer.answer and the TURN handler, no sockets). */
const SERVER_ITERATIONS = 200_000;

const ISSUE_CODES = new Set<StunIssueCode>([
  'too_short', 'not_stun', 'bad_length', 'too_long', 'bad_attribute', 'too_many_attributes',
  'bad_value', 'bad_family', 'bad_channel', 'prohibited_character', 'bad_bidi',
]);

/** xorshift32 (Marsaglia 2003): deterministic, so a failure replays from its iteration number. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KEY = Buffer.from('fuzz-key');

function seeds(): Buffer[] {
  const rfc5769 = [
    hex(`00010058 2112a442 b7e7a701 bc34d686 fa87dfae 80220010 5354554e 20746573 7420636c 69656e74 00240004 6e0001ff
         80290008 932ff9b1 51263b36 00060009 6576746a 3a683676 59202020 00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249
         c1b571a2 80280004 e57a3bcf`),
    hex(`0101003c 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563 746f7220 00200008 0001a147 e112a643
         00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7 80280004 c07d4c96`),
    hex(`01010048 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563 746f7220 00200014 0002a147 0113a9fa
         a5d3f179 bc25f4b5 bed2b9d9 00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41 80280004 c8fb0b4c`),
    hex(`00010060 2112a442 78ad3433 c6ad72c0 29da412e 00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000 0015001c
         662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341 0014000b 6578616d 706c652e 6f726700 00080014
         f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666`),
  ];
  const tid = Buffer.from('0123456789ab');
  const auth = (b: StunMessageBuilder): Buffer =>
    b.addString(Attr.USERNAME, '1735689600:alice').addString(Attr.REALM, 'example.org').addString(Attr.NONCE, 'a1b2c3d4e5f60718')
      .addMessageIntegrity(KEY).addMessageIntegritySha256(KEY).addFingerprint().build();
  return [
    ...rfc5769,
    auth(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, tid).addUint32(Attr.REQUESTED_TRANSPORT, 17 << 24)
      .addUint32(Attr.LIFETIME, 600).add(Attr.DONT_FRAGMENT, Buffer.alloc(0)).add(Attr.REQUESTED_ADDRESS_FAMILY, hex('02000000'))),
    auth(new StunMessageBuilder(StunMethod.ChannelBind, StunClass.Request, tid).addUint32(Attr.CHANNEL_NUMBER, 0x4001 << 16)
      .addXorAddress(Attr.XOR_PEER_ADDRESS, '198.51.100.20', 40000)),
    auth(new StunMessageBuilder(StunMethod.CreatePermission, StunClass.Request, tid).addXorAddress(Attr.XOR_PEER_ADDRESS, '2001:db8::20', 40000)
      .addXorAddress(Attr.XOR_PEER_ADDRESS, '192.0.2.99', 0)),
    new StunMessageBuilder(StunMethod.Send, StunClass.Indication, tid).addXorAddress(Attr.XOR_PEER_ADDRESS, '203.0.113.5', 5000)
      .add(Attr.DATA, Buffer.alloc(1200, 0xab)).build(),
    new StunMessageBuilder(StunMethod.Allocate, StunClass.ErrorResponse, tid).addErrorCode(420).addUnknownAttributes([0x7f01, 0x0031])
      .addString(Attr.SOFTWARE, 'edgeward').addFingerprint().build(),
    many(MAX_ATTRIBUTES - 2, tid),
    buildChannelData(0x4001, Buffer.from('hello, peer'), false),
    buildChannelData(0x4fff, Buffer.alloc(101, 1), true),
  ];
}

/** An indication near the attribute bound, so inserted TLVs push it over. */
function many(n: number, tid: Buffer): Buffer {
  const b = new StunMessageBuilder(StunMethod.Data, StunClass.Indication, tid);
  for (let i = 0; i < n; i++) b.add(0x8100 + i, Buffer.alloc(i % 5));
  return b.build();
}

/** Byte offsets of the attribute headers of a well-formed STUN seed (for TLV-aware mutations). */
function attributeOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  if (buf.length < HEADER_LENGTH || (buf[0]! & 0xc0) !== 0) return out;
  for (let off = HEADER_LENGTH; off + 4 <= buf.length; off += 4 + ((buf.readUInt16BE(off + 2) + 3) & ~3)) out.push(off);
  return out;
}

function mutate(seed: Buffer, tlvOffsets: number[], other: Buffer, rand: () => number): Buffer {
  const pick = (n: number): number => rand() % n;
  let buf = Buffer.from(seed);
  const rounds = 1 + pick(3);
  for (let r = 0; r < rounds; r++) {
    switch (pick(8)) {
      case 0: // flip 1 to 8 bits
        for (let i = 1 + pick(8); i > 0 && buf.length > 0; i--) buf[pick(buf.length)]! ^= 1 << pick(8);
        break;
      case 1: // truncate
        buf = buf.subarray(0, pick(buf.length + 1));
        break;
      case 2: // the STUN / ChannelData length field: nudged by a few words, or random
        if (buf.length >= 4) buf.writeUInt16BE(pick(2) === 0 ? (buf.readUInt16BE(2) + (pick(9) - 4) * 4) & 0xffff : rand() & 0xffff, 2);
        break;
      case 3: // an attribute's length field
        if (tlvOffsets.length > 0) {
          const off = tlvOffsets[pick(tlvOffsets.length)]!;
          if (off + 4 <= buf.length) buf.writeUInt16BE(pick(2) === 0 ? (buf.readUInt16BE(off + 2) + pick(9) - 4) & 0xffff : rand() & 0xffff, off + 2);
        }
        break;
      case 4: {
        // insert a random TLV at an attribute boundary, keeping the header length consistent most of the time
        const at = tlvOffsets.length > 0 && pick(4) !== 0 ? tlvOffsets[pick(tlvOffsets.length)]! : pick(buf.length + 1);
        const valueLength = pick(4) === 0 ? rand() & 0xffff : pick(40);
        const body = Buffer.alloc(4 + Math.min(valueLength, 64) + pick(4));
        body.writeUInt16BE(pick(2) === 0 ? rand() & 0xffff : [Attr.XOR_PEER_ADDRESS, Attr.ERROR_CODE, Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT, Attr.USERNAME][pick(5)]!, 0);
        body.writeUInt16BE(valueLength, 2);
        for (let i = 4; i < body.length; i++) body[i] = rand() & 0xff;
        buf = Buffer.concat([buf.subarray(0, Math.min(at, buf.length)), body, buf.subarray(Math.min(at, buf.length))]);
        if (pick(4) !== 0 && buf.length >= 4) buf.writeUInt16BE((buf.length - HEADER_LENGTH) & 0xffff, 2);
        break;
      }
      case 5: // overwrite a run of bytes with random ones
        for (let i = pick(buf.length + 1), n = 1 + pick(16); n > 0 && i < buf.length; i++, n--) buf[i] = rand() & 0xff;
        break;
      case 6: // append random bytes
        buf = Buffer.concat([buf, Buffer.from(Array.from({ length: 1 + pick(12) }, () => rand() & 0xff))]);
        break;
      default: // splice the head of one seed onto the tail of another
        buf = Buffer.concat([buf.subarray(0, pick(buf.length + 1)), other.subarray(pick(other.length + 1))]);
    }
  }
  // half the time repair the header length, so the mutation reaches the attribute walk
  if (pick(2) === 0 && buf.length >= HEADER_LENGTH && buf.length - HEADER_LENGTH <= 0xffff) buf.writeUInt16BE(buf.length - HEADER_LENGTH, 2);
  return buf;
}

/** true when view lies inside buf's bytes. */
const inside = (view: Buffer, buf: Buffer): boolean =>
  view.buffer === buf.buffer && view.byteOffset >= buf.byteOffset && view.byteOffset + view.length <= buf.byteOffset + buf.length;

type Outcome = 'stun' | 'channel_data' | StunIssueCode;

/** Checks one input; returns what is wrong, or how the parsers read it. */
function check(buf: Buffer): { problem: string } | Outcome {
  const problem = (text: string): { problem: string } => ({ problem: text });
  const m = parseStun(buf);
  if (m.ok) {
    const msg = m.value;
    if (msg.raw !== buf || msg.transactionId.length !== 12 || !inside(msg.transactionId, buf)) return problem('parseStun: header outside the input');
    if (msg.attributes.length > MAX_ATTRIBUTES) return problem(`parseStun: ${msg.attributes.length} attributes`);
    if (msg.method > 0xfff || msg.cls < 0 || msg.cls > 3) return problem('parseStun: method or class out of range');
    for (const a of msg.attributes) {
      if (a.offset < HEADER_LENGTH || a.offset + 4 + a.value.length > buf.length || !inside(a.value, buf)) return problem(`parseStun: attribute at ${a.offset} outside the input`);
      if (a.value.byteOffset !== buf.byteOffset + a.offset + 4) return problem(`parseStun: attribute at ${a.offset} misplaced`);
      // the value is exactly what its length field claims, and its padding fits too
      const claimed = buf.readUInt16BE(a.offset + 2);
      if (a.value.length !== claimed || a.offset + 4 + ((claimed + 3) & ~3) > buf.length) return problem(`parseStun: attribute at ${a.offset} overruns the input`);
      // the value decoders must not throw on whatever the parser let through
      if (a.type === Attr.XOR_PEER_ADDRESS || a.type === Attr.XOR_MAPPED_ADDRESS || a.type === Attr.XOR_RELAYED_ADDRESS) {
        const x = decodeXorAddress(a.value, msg.transactionId);
        if (x.ok && (x.value.port > 0xffff || x.value.ip.length === 0)) return problem('decodeXorAddress: impossible address');
      } else if (a.type === Attr.ERROR_CODE) {
        const e = decodeErrorCode(a.value);
        if (e.ok && (e.value.code < 300 || e.value.code > 699)) return problem(`decodeErrorCode: code ${e.value.code}`);
      } else if (a.type === Attr.UNKNOWN_ATTRIBUTES) decodeUnknownAttributes(a.value);
      else if (a.type === Attr.USERNAME || a.type === Attr.REALM || a.type === Attr.NONCE) decodeString(a.type, a.value);
    }
    checkFingerprint(msg);
    checkMessageIntegrity(msg, KEY);
    checkMessageIntegritySha256(msg, KEY);
    if (frameLength(buf) !== buf.length) return problem('frameLength disagrees with parseStun on a whole message');
  } else if (!ISSUE_CODES.has(m.error.code) || m.error.message.length === 0) return problem(`parseStun: untyped issue ${JSON.stringify(m.error)}`);

  const n = frameLength(buf);
  if (n === 'more') {
    if (buf.length >= 8) return problem(`frameLength: 'more' with ${buf.length} bytes`);
  } else if (typeof n === 'number') {
    if (n < 4 || n > MAX_MESSAGE_LENGTH || n % 4 !== 0) return problem(`frameLength: ${n}`);
  } else if (!ISSUE_CODES.has(n.code)) return problem(`frameLength: untyped issue ${JSON.stringify(n)}`);

  const c = parseChannelData(buf);
  if (c.ok) {
    if (c.value.channel < CHANNEL_MIN || c.value.channel > CHANNEL_MAX || !inside(c.value.data, buf)) return problem('parseChannelData: outside the input');
    // the input is one frame: the data, and padding at most
    if (n !== 4 + ((c.value.data.length + 3) & ~3) || buf.length > n) return problem('parseChannelData accepted more than one frame');
  } else if (!ISSUE_CODES.has(c.error.code)) return problem(`parseChannelData: untyped issue ${JSON.stringify(c.error)}`);
  return m.ok ? 'stun' : c.ok ? 'channel_data' : m.error.code;
}

describe('STUN/TURN parser fuzzing', () => {
  it(`${FUZZ_ITERATIONS} mutated messages: no throw, every result inside its input`, () => {
    const pool = seeds();
    for (const s of pool) assert.equal(typeof check(s), 'string', 'a seed itself fails the checks');
    const offsets = pool.map(attributeOffsets);
    const rand = prng(FUZZ_SEED);
    const outcomes = new Map<Outcome, number>();
    const started = process.hrtime.bigint();
    for (let i = 0; i < FUZZ_ITERATIONS; i++) {
      const k = rand() % pool.length;
      const input = mutate(pool[k]!, offsets[k]!, pool[rand() % pool.length]!, rand);
      let outcome: ReturnType<typeof check>;
      try {
        outcome = check(input);
      } catch (e) {
        outcome = { problem: `threw ${String(e)}` };
      }
      if (typeof outcome !== 'string') assert.fail(`iteration ${i} (seed ${k}, input ${input.toString('hex')}): ${outcome.problem}`);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const tally = [...outcomes].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o} ${n}`).join(', ');
    console.log(`stun fuzz: ${FUZZ_ITERATIONS} inputs in ${seconds.toFixed(1)} s (${tally})`);
    // the mutations reach past the first check: some still parse, and each kind of rejection happens
    assert.ok((outcomes.get('stun') ?? 0) > FUZZ_ITERATIONS / 20, `too few mutated inputs still parse: ${tally}`);
    assert.ok((outcomes.get('channel_data') ?? 0) > 0, tally);
    for (const code of ['too_short', 'not_stun', 'bad_length', 'bad_attribute', 'too_many_attributes'] as const) {
      assert.ok((outcomes.get(code) ?? 0) > 0, `no input was rejected as ${code}: ${tally}`);
    }
  });
});

describe('STUN/TURN server fuzzing', () => {
  it(`${SERVER_ITERATIONS} mutated messages through the server and its TURN handler: no throw, every answer a well-formed STUN response to its request`, async () => {
    const turn = new TurnHandler({
      realm: 'example.org',
      secrets: ['fuzz-secret'],
      relayIps: { 4: '127.0.0.1' },
      peers: new PeerPolicy([], []),
      maxAllocations: 10,
      maxAllocationsPerUser: 10,
      bandwidth: 0,
      authRate: 20,
      software: 'fuzz',
      userKey: async () => null,
    });
    const server = new StunServer({ software: 'fuzz', counters: newStunCounters(), maxTcpClients: 1, tcpIdleTimeout: 0, turn, logger: silentLogger });
    const pool = seeds();
    const offsets = pool.map(attributeOffsets);
    const rand = prng(FUZZ_SEED ^ 0x1234);
    let answered = 0;
    let malformedAnswers = 0;
    const pending: Array<Promise<void> | void> = [];
    try {
      for (let i = 0; i < SERVER_ITERATIONS; i++) {
        const k = rand() % pool.length;
        const input = mutate(pool[k]!, offsets[k]!, pool[rand() % pool.length]!, rand);
        // sources spread over 4096 addresses, so the per-source budgets both answer and go silent
        const ip = `198.51.${(i >> 8) & 15}.${i & 255}`;
        const request = parseStun(input, { rfc3489: true });
        const send = (reply: Buffer): void => {
          answered++;
          const r = parseStun(reply, { rfc3489: true });
          const id = request.ok ? request.value.raw.subarray(request.value.rfc3489 ? 4 : 8, 20) : null;
          if (!r.ok || r.value.cls === StunClass.Request || r.value.cls === StunClass.Indication || !id || !r.value.raw.subarray(r.value.rfc3489 ? 4 : 8, 20).equals(id)) malformedAnswers++;
        };
        try {
          pending.push(server.answer(input, ip, 40000 + (i & 1023), i % 3 === 0 ? 'tcp' : 'udp', send));
        } catch (e) {
          assert.fail(`iteration ${i} (seed ${k}, input ${input.toString('hex')}): threw ${String(e)}`);
        }
        if (pending.length >= 1000) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
    } finally {
      turn.close();
    }
    assert.equal(malformedAnswers, 0, `${malformedAnswers} of ${answered} answers were not a response to their request`);
    // most mutations break the seeds' FINGERPRINT or framing and are dropped unanswered, as they should be
    console.log(`stun server fuzz: ${SERVER_ITERATIONS} inputs, ${answered} answered`);
    assert.ok(answered > 1000, `only ${answered} answers: the mutations do not reach the server's logic`);
    assert.equal(turn.table.size, 0, 'no credential survives mutation: nothing was allocated');
  });
});
