// net/listener.ts on loopback: the listening socket SOCKS and intercept share. What a user of
// those services notices: shutdown closes the clients still open, --max-connections refuses and
// counts the rest, MPTCP is reported as the kernel made it, and a port in use costs no file descriptor.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import { ClientListener } from '../../src/net/listener.js';

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('ClientListener', () => {
  it('after close() stops accepting, destroyClients() closes the clients still open', { timeout: 10_000 }, async () => {
    const accepted: net.Socket[] = [];
    const l = new ClientListener({ accept: { allowHalfOpen: true }, maxConnections: 10, onConnection: (c) => accepted.push(c), onDrop: () => undefined });
    const { port } = await l.listen({ host: '127.0.0.1', port: 0 });
    const a = await connect(port);
    const b = await connect(port);
    a.on('error', () => undefined);
    b.on('error', () => undefined);
    while (accepted.length < 2) await sleep(10);
    l.close();
    await assert.rejects(connect(port), { code: 'ECONNREFUSED' }, 'no longer accepting');
    assert.equal(a.destroyed || b.destroyed, false, 'open clients go on after close()');
    l.destroyClients();
    await Promise.all([closed(a), closed(b)]);
  });

  it('refuses connections beyond maxConnections and reports each one', { timeout: 10_000 }, async () => {
    let drops = 0;
    const accepted: net.Socket[] = [];
    const l = new ClientListener({ accept: {}, maxConnections: 1, onConnection: (c) => accepted.push(c), onDrop: () => drops++ });
    const { port } = await l.listen({ host: '127.0.0.1', port: 0 });
    try {
      const first = await connect(port);
      while (accepted.length < 1) await sleep(10);
      const second = await connect(port);
      second.on('error', () => undefined);
      await closed(second);
      assert.equal(drops, 1);
      assert.equal(accepted.length, 1, 'the refused connection never reached the service');
      first.destroy();
    } finally {
      l.close();
      l.destroyClients();
    }
  });

  it('opens an MPTCP listening socket when asked, says so, and plain TCP clients still connect', { timeout: 10_000 }, async () => {
    const l = new ClientListener({ accept: {}, maxConnections: 10, onConnection: (c) => c.end('hi'), onDrop: () => undefined });
    const bound = await l.listen({ host: '127.0.0.1', port: 0, mptcp: true });
    try {
      assert.equal(bound.mptcp, bound.mptcpUnavailable === undefined, `mptcp ${bound.mptcp}, unavailable: ${bound.mptcpUnavailable}`);
      assert.equal(typeof l.fd, 'number', 'the socket was made here, its fd can be shared');
      const s = await connect(bound.port);
      const got = await new Promise<string>((resolve) => {
        let text = '';
        s.on('data', (d) => (text += d.toString()));
        s.on('end', () => resolve(text));
      });
      assert.equal(got, 'hi');
    } finally {
      l.close();
      l.destroyClients();
    }
  });

  it('a port already in use rejects with EADDRINUSE and leaves no file descriptor behind', { timeout: 10_000 }, async () => {
    const holder = new ClientListener({ accept: {}, maxConnections: 10, onConnection: (c) => c.destroy(), onDrop: () => undefined });
    const { port } = await holder.listen({ host: '127.0.0.1', port: 0 });
    try {
      for (const at of [{ shareable: true }, { mptcp: true }, {}]) {
        const before = openFds();
        const l = new ClientListener({ accept: {}, maxConnections: 10, onConnection: (c) => c.destroy(), onDrop: () => undefined });
        await assert.rejects(l.listen({ host: '127.0.0.1', port, ...at }), { code: 'EADDRINUSE' }, JSON.stringify(at));
        assert.equal(openFds(), before, `no fd leaked (${JSON.stringify(at)})`);
        assert.equal(l.fd, null);
      }
    } finally {
      holder.close();
    }
  });
});
