// The sockaddr a connect is made with (kernel/sockopt.ts): the IPv4 fast path written in
// JavaScript must take and refuse exactly what libc's inet_pton does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sockaddr, sockaddrNow } from '../../src/kernel/sockopt.js';

function either(f: () => Buffer): string {
  try {
    return Buffer.from(f()).toString('hex');
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

describe('sockaddrNow', () => {
  it('gives the same bytes as inet_pton for IPv4 literals, and refuses the same malformed ones', () => {
    const inputs = ['1.2.3.4', '127.0.0.1', '0.0.0.0', '255.255.255.255', '10.0.0.10', '256.1.1.1', '01.2.3.4', '1.2.3.04', '1.2.3', '1.2.3.4.5', '', '1..2.3', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.4.', '.1.2.3', '1.2.3.1000', '1.2.3.-1', 'a.b.c.d', '1.2.3.0x1', '300.300.300.300'];
    for (let i = 0; i < 200; i++) inputs.push([0, 1, 2, 3].map(() => String(Math.floor(Math.random() * 300))).join('.'));
    for (const ip of inputs) {
      const want = either(() => sockaddr(4, ip, 1080));
      const got = either(() => sockaddrNow(4, ip, 1080));
      assert.equal(got.startsWith('error') ? 'refused' : got, want.startsWith('error') ? 'refused' : want, `"${ip}"`);
    }
  });

  it('writes IPv6 as sockaddr does, and names the bad literal', () => {
    for (const ip of ['::1', 'fd00::2', '2001:db8::8:800:200c:417a', '::ffff:1.2.3.4']) assert.equal(Buffer.from(sockaddrNow(6, ip, 443)).toString('hex'), sockaddr(6, ip, 443).toString('hex'), ip);
    assert.throws(() => sockaddrNow(6, 'fd00:::1', 443), /fd00:::1/);
    assert.throws(() => sockaddrNow(4, '1.2.3.256', 443), /1\.2\.3\.256/);
  });
});
