// The generic netlink codec (kernel/netlink.ts) and the mptcp_pm event decoder (kernel/mptcp-pm.ts):
// what the kernel sends is parsed within its bounds, a length that lies is a NetlinkParseError and
// never a read past the buffer, and an event carries the fields the kernel put in it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMptcpEvent } from '../../src/kernel/mptcp-pm.js';
import { attr, AttrWriter, NetlinkParseError, parseAttrs, parseGenl, parseMessages, read, NLA_F_NESTED, NLMSG_HDRLEN } from '../../src/kernel/netlink.js';

/** A netlink message of `type` around a genetlink header (cmd, version 1) and attributes. */
function message(type: number, cmd: number, attrs: AttrWriter, seq = 7): Buffer {
  const body = attrs.toBuffer();
  const b = Buffer.alloc(NLMSG_HDRLEN + 4 + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt32LE(seq, 8);
  b.writeUInt8(cmd, NLMSG_HDRLEN);
  b.writeUInt8(1, NLMSG_HDRLEN + 1);
  body.copy(b, NLMSG_HDRLEN + 4);
  return b;
}

const FAMILY = 28;

describe('generic netlink codec', () => {
  it('reads back what AttrWriter wrote, nests included, each attribute padded to 4 bytes', () => {
    const inner = new AttrWriter().u16(1, 2).bytes(3, Buffer.from([10, 0, 0, 1]));
    const buf = new AttrWriter().u32(4, 0xdeadbeef).u8(5, 9).str(2, 'mptcp_pm').nest(6, inner).be16(9, 443).toBuffer();
    assert.equal(buf.length % 4, 0);
    const attrs = parseAttrs(buf);
    assert.deepEqual(
      attrs.map((a) => a.type),
      [4, 5, 2, 6, 9],
    );
    assert.equal(read.u32(attr(attrs, 4)), 0xdeadbeef);
    assert.equal(read.u8(attr(attrs, 5)), 9);
    assert.equal(read.str(attr(attrs, 2)), 'mptcp_pm');
    assert.equal(read.be16(attr(attrs, 9)), 443);
    const nest = attrs.find((a) => a.type === 6)!;
    assert.equal(nest.nested, true, 'NLA_F_NESTED is kept as a flag, not in the type');
    const innerAttrs = parseAttrs(nest.value);
    assert.equal(read.u16(attr(innerAttrs, 1)), 2);
    assert.deepEqual([...attr(innerAttrs, 3)!], [10, 0, 0, 1]);
  });

  it('refuses an attribute whose length runs past its message, or is shorter than its header', () => {
    const good = new AttrWriter().u32(1, 5).toBuffer();
    const long = Buffer.from(good);
    long.writeUInt16LE(40, 0);
    assert.throws(() => parseAttrs(long), NetlinkParseError);
    const short = Buffer.from(good);
    short.writeUInt16LE(3, 0);
    assert.throws(() => parseAttrs(short), NetlinkParseError);
  });

  it('a payload too short for its reader is undefined, not a misread', () => {
    assert.equal(read.u32(Buffer.from([1, 2])), undefined);
    assert.equal(read.be16(Buffer.from([1])), undefined);
    assert.equal(read.u8(undefined), undefined);
  });

  it('splits a buffer of several messages and refuses one that claims more than is there', () => {
    const a = message(FAMILY, 1, new AttrWriter().u32(1, 1), 1);
    const b = message(FAMILY, 3, new AttrWriter().u32(1, 2), 2);
    const both = Buffer.concat([a, b]);
    const msgs = parseMessages(both);
    assert.deepEqual(
      msgs.map((m) => [m.type, m.seq, parseGenl(m.payload).cmd]),
      [
        [FAMILY, 1, 1],
        [FAMILY, 2, 3],
      ],
    );
    const lying = Buffer.from(a);
    lying.writeUInt32LE(a.length + 100, 0);
    assert.throws(() => parseMessages(lying), NetlinkParseError);
    assert.throws(() => parseGenl(Buffer.alloc(2)), NetlinkParseError);
  });

  it('takes 200 000 mutated messages with no error but NetlinkParseError and no view outside the input', () => {
    const seeds = [
      message(FAMILY, 10, new AttrWriter().u32(1, 77).u8(3, 0).u8(4, 0).bytes(5, Buffer.from([127, 0, 0, 1])).bytes(7, Buffer.from([127, 0, 0, 1])).be16(9, 40000).be16(10, 5000).u8(11, 1)),
      message(FAMILY, 6, new AttrWriter().u32(1, 9).u8(4, 5).bytes(8, Buffer.alloc(16, 0xfe))),
      message(0x10, 1, new AttrWriter().u16(1, 28).str(2, 'mptcp_pm').nest(7, new AttrWriter().nest(1 | NLA_F_NESTED, new AttrWriter().str(1, 'mptcp_pm_events').u32(2, 9)))),
    ];
    let seed = 0x6e6c6b31;
    const rand = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    let refused = 0;
    for (let i = 0; i < 200_000; i++) {
      const src = seeds[i % seeds.length]!;
      const buf = Buffer.from(src);
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
      const n = Math.floor(rand() * 4) === 0 ? Math.floor(rand() * buf.length) : buf.length;
      try {
        for (const m of parseMessages(buf, n)) {
          assert.ok(m.payload.byteOffset >= buf.byteOffset && m.payload.byteOffset + m.payload.length <= buf.byteOffset + n);
          decodeMptcpEvent(m, FAMILY);
          const g = parseGenl(m.payload);
          for (const a of g.attrs) if (a.nested) parseAttrs(a.value);
        }
      } catch (e) {
        if (!(e instanceof NetlinkParseError)) throw e;
        refused++;
      }
    }
    assert.ok(refused > 0, 'some mutations must be refused');
  });
});

describe('mptcp_pm events', () => {
  it('decodes a subflow event: token, addresses, ports (network order), ids, backup', () => {
    const m = parseMessages(
      message(
        FAMILY,
        10,
        new AttrWriter()
          .u32(1, 0x5e4da91c)
          .u16(2, 2)
          .u8(3, 2)
          .u8(4, 0)
          .bytes(5, Buffer.from([10, 248, 1, 2]))
          .bytes(7, Buffer.from([10, 248, 9, 1]))
          .be16(9, 40001)
          .be16(10, 5201)
          .u8(11, 1)
          .s32(15, 3),
      ),
    )[0]!;
    assert.deepEqual(decodeMptcpEvent(m, FAMILY), { type: 'sub_established', token: 0x5e4da91c, saddr: '10.248.1.2', daddr: '10.248.9.1', sport: 40001, dport: 5201, locId: 2, remId: 0, backup: true, ifIndex: 3 });
  });

  it('decodes IPv6 addresses in their compressed form', () => {
    const addr = Buffer.alloc(16);
    addr.writeUInt16BE(0xfd00, 0);
    addr.writeUInt16BE(1, 14);
    const m = parseMessages(message(FAMILY, 6, new AttrWriter().u32(1, 1).u8(4, 3).bytes(8, addr)))[0]!;
    assert.deepEqual(decodeMptcpEvent(m, FAMILY), { type: 'announced', token: 1, remId: 3, daddr: 'fd00::1' });
  });

  it('ignores messages of other families and event types it does not know', () => {
    assert.equal(decodeMptcpEvent(parseMessages(message(FAMILY + 1, 1, new AttrWriter()))[0]!, FAMILY), null);
    assert.equal(decodeMptcpEvent(parseMessages(message(FAMILY, 99, new AttrWriter()))[0]!, FAMILY), null);
  });
});
