// PROXY protocol v2 (shield/proxy-protocol.ts): the header bytes the spec prescribes, and a decoder
// that answers every malformed input with a typed error instead of throwing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeProxyV2,
  encodeProxyV2,
  encodeProxyV2Local,
  ProxyCommand,
  ProxyFamily,
  ProxyProtocolError,
  ProxyTransport,
  PROXY_V2_SIGNATURE,
  type ProxyProtocolErrorCode,
} from '../../src/shield/proxy-protocol.js';

const SIGNATURE_HEX = '0d0a0d0a000d0a515549540a';

function errorCode(buf: Buffer, maxLength?: number): ProxyProtocolErrorCode | 'ok' {
  const r = decodeProxyV2(buf, maxLength);
  return r.ok ? 'ok' : r.error.code;
}

describe('PROXY v2 encoder', () => {
  it('writes the spec bytes for TCP over IPv4', () => {
    const h = encodeProxyV2({ address: '127.0.0.9', port: 40000 }, { address: '192.0.2.1', port: 80 });
    // signature, 0x21 (v2, PROXY), 0x11 (INET, STREAM), length 12, src, dst, src port, dst port
    assert.equal(h.toString('hex'), `${SIGNATURE_HEX}2111000c7f000009c00002019c400050`);
    assert.equal(h.length, 28);
  });

  it('writes the spec bytes for TCP over IPv6', () => {
    const h = encodeProxyV2({ address: '2001:db8::7', port: 1 }, { address: '::1', port: 443 });
    const src = '20010db8000000000000000000000007';
    const dst = '00000000000000000000000000000001';
    assert.equal(h.toString('hex'), `${SIGNATURE_HEX}21210024${src}${dst}000101bb`);
    assert.equal(h.length, 16 + 36);
  });

  it('takes an IPv4-mapped client as IPv4; a mixed pair goes as IPv6 with the IPv4 side mapped', () => {
    const mapped = encodeProxyV2({ address: '::ffff:10.1.2.3', port: 5 }, { address: '10.0.0.1', port: 6 });
    assert.equal(mapped[13], 0x11);
    const mixed = encodeProxyV2({ address: '10.1.2.3', port: 5 }, { address: '2001:db8::1', port: 6 });
    assert.equal(mixed[13], 0x21);
    assert.equal(mixed.subarray(16, 32).toString('hex'), '00000000000000000000ffff0a010203');
  });

  it('writes UDP as 0x12, TLVs after the addresses, LOCAL as 0x20 with family UNSPEC and no body', () => {
    const udp = encodeProxyV2({ address: '10.0.0.1', port: 1 }, { address: '10.0.0.2', port: 2 }, { transport: 'dgram', tlvs: [{ type: 0x04, value: Buffer.from('hi') }] });
    assert.equal(udp[13], 0x12);
    assert.equal(udp.readUInt16BE(14), 12 + 5);
    assert.equal(udp.subarray(28).toString('hex'), '040002' + Buffer.from('hi').toString('hex'));
    assert.equal(encodeProxyV2Local().toString('hex'), `${SIGNATURE_HEX}20000000`);
  });

  it('refuses what a header cannot carry with a ProxyProtocolError', () => {
    assert.throws(() => encodeProxyV2({ address: 'example.com', port: 1 }, { address: '10.0.0.1', port: 1 }), (e: unknown) => e instanceof ProxyProtocolError && e.code === 'invalid_input' && e.field === 'source.address');
    assert.throws(() => encodeProxyV2({ address: '10.0.0.1', port: 70000 }, { address: '10.0.0.1', port: 1 }), (e: unknown) => e instanceof ProxyProtocolError && e.field === 'source.port');
  });
});

describe('PROXY v2 decoder', () => {
  it('reads back what the encoder wrote, and says where the data starts', () => {
    const h = encodeProxyV2({ address: '127.0.0.9', port: 40000 }, { address: '192.0.2.1', port: 80 }, { tlvs: [{ type: 0xe0, value: Buffer.from([1, 2, 3]) }] });
    const r = decodeProxyV2(Buffer.concat([h, Buffer.from('GET / HTTP/1.1\r\n')]));
    assert.ok(r.ok);
    assert.equal(r.value.command, ProxyCommand.PROXY);
    assert.equal(r.value.family, ProxyFamily.INET);
    assert.equal(r.value.transport, ProxyTransport.STREAM);
    assert.deepEqual(r.value.source, { address: '127.0.0.9', port: 40000 });
    assert.deepEqual(r.value.destination, { address: '192.0.2.1', port: 80 });
    assert.deepEqual(r.value.tlvs, [{ type: 0xe0, value: Buffer.from([1, 2, 3]) }]);
    assert.equal(r.value.length, h.length);
    const v6 = decodeProxyV2(encodeProxyV2({ address: '2001:db8::7', port: 1 }, { address: '::1', port: 443 }));
    assert.ok(v6.ok);
    assert.deepEqual([v6.value.source, v6.value.destination], [{ address: '2001:db8::7', port: 1 }, { address: '::1', port: 443 }]);
    const local = decodeProxyV2(encodeProxyV2Local());
    assert.ok(local.ok);
    assert.equal(local.value.command, ProxyCommand.LOCAL);
    assert.equal(local.value.source, null);
  });

  it('answers every truncation with "truncated", never a throw', () => {
    const h = encodeProxyV2({ address: '2001:db8::7', port: 1 }, { address: '::1', port: 443 }, { tlvs: [{ type: 1, value: Buffer.from('h2') }] });
    for (let n = 0; n < h.length; n++) {
      const code = errorCode(h.subarray(0, n));
      assert.equal(code, 'truncated', `first ${n} bytes`);
    }
  });

  it('refuses a wrong signature, version, command and family', () => {
    const h = encodeProxyV2({ address: '10.0.0.1', port: 1 }, { address: '10.0.0.2', port: 2 });
    const bad = (at: number, value: number): Buffer => {
      const b = Buffer.from(h);
      b[at] = value;
      return b;
    };
    assert.equal(errorCode(Buffer.from('PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n')), 'bad_signature');
    assert.equal(errorCode(bad(11, 0x0b)), 'bad_signature');
    assert.equal(errorCode(Buffer.from('GET')), 'bad_signature', 'a short prefix that cannot be a signature');
    assert.equal(errorCode(bad(12, 0x11)), 'bad_version');
    assert.equal(errorCode(bad(12, 0x22)), 'bad_command');
    assert.equal(errorCode(bad(13, 0x41)), 'bad_family');
    assert.equal(errorCode(bad(13, 0x13)), 'bad_family');
  });

  it('refuses a length over the limit, shorter than the addresses, or TLVs running past the header', () => {
    const h = encodeProxyV2({ address: '10.0.0.1', port: 1 }, { address: '10.0.0.2', port: 2 });
    const huge = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
    assert.equal(errorCode(huge), 'too_long', 'a 64 KiB header is refused before waiting for it');
    assert.equal(errorCode(h, 20), 'too_long');
    const short = Buffer.from(h);
    short.writeUInt16BE(8, 14);
    assert.equal(errorCode(short), 'bad_length');
    const tlv = Buffer.concat([h, Buffer.from([0x01, 0x00, 0x09, 0x61])]);
    tlv.writeUInt16BE(12 + 4, 14);
    assert.equal(errorCode(tlv), 'bad_length', 'TLV says 9 bytes, 1 is there');
    const stub = Buffer.concat([h, Buffer.from([0x01, 0x00])]);
    stub.writeUInt16BE(12 + 2, 14);
    assert.equal(errorCode(stub), 'bad_length', 'two bytes cannot hold a TLV');
    const r = decodeProxyV2(huge);
    assert.ok(!r.ok);
    assert.equal(typeof r.error.message, 'string');
    assert.equal(r.error.field, 'length');
  });

  it('never throws on random bytes behind a valid signature', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const body = Buffer.from(Array.from({ length: rnd() % 64 }, rnd));
      const r = decodeProxyV2(Buffer.concat([PROXY_V2_SIGNATURE, body]));
      assert.equal(typeof r.ok, 'boolean');
    }
  });
});
