// kernel/udp-socket.ts on loopback, against node:dgram peers: the UDP sockets TURN relays through.
// What a user of the relay notices: every datagram arrives whole and in order, in bursts larger
// than one batch, over IPv4 and IPv6, with the sender's address as Node would write it; a datagram
// the kernel refuses is lost alone while the rest of its batch arrives; a port in use is a typed
// error that costs no file descriptor; a closed socket frees its fd and its port.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { openUdpSockets, UdpSocket } from '../../src/kernel/udp-socket.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

function peer(type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type, ipv6Only: type === 'udp6', recvBufferSize: 8 * 1024 * 1024 });
  return new Promise((resolve) => s.bind(0, host, () => resolve(s)));
}

function collect(s: dgram.Socket, n: number, timeoutMs = 10_000): Promise<Array<{ data: Buffer; address: string; port: number }>> {
  const got: Array<{ data: Buffer; address: string; port: number }> = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} datagrams`)), timeoutMs);
    s.on('message', (data, r) => {
      got.push({ data, address: r.address, port: r.port });
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

describe('UdpSocket (recvmmsg/sendmmsg below node:dgram)', () => {
  for (const [type, host] of [
    ['udp4', '127.0.0.1'],
    ['udp6', '::1'],
  ] as const) {
    it(`echoes a burst of 1000 datagrams of 1-1400 bytes whole and in order (${type})`, { timeout: 20_000 }, async () => {
      const s = UdpSocket.bind({ family: type === 'udp6' ? 6 : 4, host, port: 0, recvBufferSize: 4 * 1024 * 1024 });
      const from: string[] = [];
      s.onMessage = (data, address, port) => {
        from.push(`${address}|${port}`);
        s.send(data, port, address);
      };
      const p = await peer(type, host);
      try {
        const sent = Array.from({ length: 1000 }, (_, i) => randomBytes(1 + ((i * 37) % 1400)));
        const back = collect(p, sent.length);
        for (const d of sent) p.send(d, s.port, host);
        const got = await back;
        assert.deepEqual(
          got.map((g) => g.data.toString('hex')),
          sent.map((d) => d.toString('hex')),
          'every datagram back, whole, in order',
        );
        assert.ok(got.every((g) => g.address === host && g.port === s.port), 'from the socket bound');
        assert.deepEqual(new Set(from), new Set([`${host}|${p.address().port}`]), 'the sender as node:dgram names it');
      } finally {
        p.close();
        s.close();
      }
    });
  }

  it('drops a datagram the kernel refuses (EMSGSIZE) alone: the rest of its batch arrives', async () => {
    const s = UdpSocket.bind({ family: 4, host: '127.0.0.1', port: 0 });
    const p = await peer('udp4', '127.0.0.1');
    try {
      const back = collect(p, 20);
      for (let i = 0; i < 21; i++) {
        // the 11th is larger than an IPv4 datagram can be
        assert.equal(s.send(i === 10 ? Buffer.alloc(65_520) : Buffer.from(`datagram ${i}`), p.address().port, '127.0.0.1'), true);
      }
      const got = await back;
      assert.deepEqual(
        got.map((g) => g.data.toString()),
        Array.from({ length: 21 }, (_, i) => `datagram ${i}`).filter((_, i) => i !== 10),
      );
      assert.equal(s.counters.sendErrors, 1);
    } finally {
      p.close();
      s.close();
    }
  });

  it('refuses at once what cannot be sent at all: port 0, another family, no IP', () => {
    const s = UdpSocket.bind({ family: 4, host: '127.0.0.1', port: 0 });
    try {
      assert.equal(s.send(Buffer.from('x'), 0, '127.0.0.1'), false);
      assert.equal(s.send(Buffer.from('x'), 9, '::1'), false);
      assert.equal(s.send(Buffer.from('x'), 9, 'localhost'), false);
      assert.equal(s.counters.sendErrors, 3);
    } finally {
      s.close();
    }
  });

  it('a port in use is EADDRINUSE and costs no fd; close frees the fd and the port', async () => {
    const before = openFds();
    const sockets = openUdpSockets();
    const a = UdpSocket.bind({ family: 4, host: '127.0.0.1', port: 0 });
    assert.equal(openUdpSockets() >= 1, true);
    assert.equal(openUdpSockets(), sockets + 1, 'one more open socket, and none for the refused bind below');
    assert.throws(() => UdpSocket.bind({ family: 4, host: '127.0.0.1', port: a.port }), { code: 'EADDRINUSE' });
    assert.equal(openUdpSockets(), sockets + 1);
    a.close();
    assert.equal(openUdpSockets(), sockets);
    // libuv closes its poll handle on the next turn
    await new Promise((r) => setImmediate(r));
    assert.equal(openFds(), before, 'no fd left open');
    const again = UdpSocket.bind({ family: 4, host: '127.0.0.1', port: a.port });
    assert.equal(again.port, a.port, 'the port is free again');
    again.close();
  });
});
