// The SOCKS server in this process (new SocksServer, a real store in a temporary directory, real
// sockets on loopback), for what needs a timeout smaller than the command line's whole seconds or
// a look at the server's own counters: the handshake timer of SOCKS4, the bound on the peers a
// UDP association accepts replies from, and a CONNECT whose destination never answers (timed out,
// or abandoned by its client).
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UserService } from '../../src/auth/users.js';
import { createLogger } from '../../src/log/logger.js';
import { CidrList } from '../../src/net/address.js';
import { PolicyService } from '../../src/policy/service.js';
import { ConnectionRegistry } from '../../src/relay/registry.js';
import { localAddress } from '../../src/kernel/fdio.js';
import { closeFd, openListenSocket } from '../../src/kernel/sockopt.js';
import { SocksServer } from '../../src/socks/server.js';
import { MAX_UDP_PEERS } from '../../src/socks/udp.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

interface Running {
  socks: SocksServer;
  registry: ConnectionRegistry;
  port: number;
  stop(): Promise<void>;
}

/** A SocksServer on 127.0.0.1:0 without auth, allow or deny lists. */
async function startSocks(handshakeTimeout: number, connectTimeout = 5000): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-socks-server-'));
  const store = new SqliteStore(dir);
  const registry = new ConnectionRegistry();
  const socks = new SocksServer({
    requireAuth: false,
    users: new UserService(store),
    clientAllow: new CidrList([]),
    outbound: { policies: await PolicyService.open(store, {}), deny: new CidrList([]), connectTimeout },
    registry,
    handshakeTimeout,
    idleTimeout: 0,
    maxConnections: 100,
    logger: createLogger({ level: 'error', write: () => undefined }),
  });
  const bound = await socks.listen('127.0.0.1', 0);
  return {
    socks,
    registry,
    port: bound.port,
    stop: async () => {
      await socks.close();
      socks.destroyClients();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `done` until it holds; rejects after timeoutMs naming `what`. */
async function until(what: string, done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The next `n` bytes from a socket (buffered across reads). */
function reader(s: net.Socket): (n: number) => Promise<Buffer> {
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  return async (n) => {
    while (buf.length < n) await new Promise<void>((r) => (wake = r));
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };
}

interface UdpSocket {
  socket: dgram.Socket;
  port: number;
  /** datagrams received, with their sender */
  received: Array<{ data: Buffer; address: string; port: number }>;
}

async function udpSocket(host: string): Promise<UdpSocket> {
  const socket = dgram.createSocket('udp4');
  const received: UdpSocket['received'] = [];
  socket.on('message', (data, r) => received.push({ data, address: r.address, port: r.port }));
  await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
  return { socket, port: socket.address().port, received };
}

/** A SOCKS UDP datagram to an IPv4 destination: RSV(2) FRAG ATYP=1 ADDR PORT DATA. */
function udpFrame(ip: string, port: number, data: string): Buffer {
  const head = Buffer.from([0, 0, 0, 1, ...ip.split('.').map(Number), port >> 8, port & 255]);
  return Buffer.concat([head, Buffer.from(data)]);
}

describe('SOCKS4 handshake timeout', () => {
  const TIMEOUT = 1000;
  let gw: Running;

  before(async () => {
    gw = await startSocks(TIMEOUT);
  });

  after(async () => {
    await gw?.stop();
  });

  it('closes a SOCKS4 client that stalls after its first bytes once --handshake-timeout has passed since it connected, and counts handshake_timeout', { timeout: 10_000 }, async () => {
    const connectedAt = Date.now();
    const s = await connect(gw.port);
    s.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now() - connectedAt)));
    await sleep(0.8 * TIMEOUT);
    // the version byte and the command of a SOCKS4 request, then nothing
    s.write(Buffer.from([0x04, 0x01]));
    const ms = await Promise.race([closed, sleep(3 * TIMEOUT).then(() => Infinity)]);
    s.destroy();
    // one timeout from the connect, not a fresh one from the first byte (that would be 1.8x)
    assert.ok(ms >= 0.7 * TIMEOUT && ms < 1.4 * TIMEOUT, `closed ${ms} ms after connecting; handshake timeout ${TIMEOUT} ms`);
    assert.equal(gw.registry.totals.failures.handshake_timeout, 1, JSON.stringify(gw.registry.totals.failures));
  });
});

describe('UDP ASSOCIATE: the peers replies are taken from are bounded', () => {
  let gw: Running;

  before(async () => {
    gw = await startSocks(5000);
  });

  after(async () => {
    await gw?.stop();
  });

  it(`after a client sent to more than MAX_UDP_PEERS (${MAX_UDP_PEERS}) peers, the newest peer's reply reaches it and the forgotten oldest one's does not`, { timeout: 30_000 }, async () => {
    const control = await connect(gw.port);
    control.on('error', () => undefined);
    const client = await udpSocket('127.0.0.1');
    const oldest = await udpSocket('127.0.0.1');
    const newest = await udpSocket('127.0.0.1');
    // every sprayed peer is 127.1.x.y on one port: a wildcard socket receives for all of them
    const sink = await udpSocket('0.0.0.0');
    try {
      const read = reader(control);
      control.write(Buffer.from([0x05, 0x01, 0x00]));
      assert.deepEqual([...(await read(2))], [0x05, 0x00]);
      control.write(Buffer.from([0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
      const reply = await read(10);
      assert.equal(reply[1], 0x00, 'UDP ASSOCIATE succeeded');
      const relay = { host: `${reply[4]}.${reply[5]}.${reply[6]}.${reply[7]}`, port: reply.readUInt16BE(8) };
      const send = (ip: string, port: number, data: string): void => client.socket.send(udpFrame(ip, port, data), relay.port, relay.host);
      const repliesFrom = (peer: UdpSocket): string[] => client.received.map((d) => d.data.subarray(10).toString()).filter((t) => t.startsWith(`${peer.port}:`));

      send('127.0.0.1', oldest.port, 'first');
      await until('the oldest peer to receive', () => oldest.received.length === 1);
      const relayOut = oldest.received[0]!;
      oldest.socket.send(`${oldest.port}:while contacted`, relayOut.port, relayOut.address);
      await until('the reply of a contacted peer', () => repliesFrom(oldest).length === 1);

      // MAX_UDP_PEERS more peers, in batches the sockets' buffers hold
      const BATCH = 64;
      for (let i = 0; i < MAX_UDP_PEERS; i += BATCH) {
        for (let j = i; j < Math.min(i + BATCH, MAX_UDP_PEERS); j++) send(`127.1.${Math.floor(j / 250)}.${(j % 250) + 1}`, sink.port, 'spray');
        await until(`${Math.min(i + BATCH, MAX_UDP_PEERS)} sprayed datagrams relayed`, () => sink.received.length === Math.min(i + BATCH, MAX_UDP_PEERS));
      }
      send('127.0.0.1', newest.port, 'last');
      await until('the newest peer to receive', () => newest.received.length === 1);
      assert.equal(newest.received[0]!.port, relayOut.port, 'one outgoing relay socket');

      oldest.socket.send(`${oldest.port}:after the spray`, relayOut.port, relayOut.address);
      newest.socket.send(`${newest.port}:after the spray`, relayOut.port, relayOut.address);
      await until('the newest peer\'s reply', () => repliesFrom(newest).length === 1);
      await sleep(300);
      assert.deepEqual(repliesFrom(oldest), [`${oldest.port}:while contacted`], 'the forgotten peer\'s reply is dropped');
    } finally {
      control.destroy();
      for (const u of [client, oldest, newest, sink]) u.socket.close();
    }
  });
});

/** File descriptors this process holds now. */
function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * A listening socket on 127.0.0.1 that never accepts, its accept queue filled (backlog 0, one
 * connection waiting): the kernel drops further SYNs, so a connect to it neither succeeds nor fails.
 */
async function silentDestination(): Promise<{ port: number; close(): void }> {
  const { fd } = openListenSocket({ family: 4, host: '127.0.0.1', port: 0, backlog: 0 });
  const port = localAddress(fd)!.port;
  const filler = await connect(port);
  return {
    port,
    close: () => {
      filler.destroy();
      closeFd(fd);
    },
  };
}

/** SOCKS5 no-auth greeting and a CONNECT to 127.0.0.1:port. */
function connectRequest(port: number): Buffer {
  return Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]);
}

describe('SOCKS CONNECT to a destination that never answers', () => {
  const CONNECT_TIMEOUT = 600;
  let gw: Running;
  let dest: Awaited<ReturnType<typeof silentDestination>>;

  before(async () => {
    gw = await startSocks(5000, CONNECT_TIMEOUT);
    dest = await silentDestination();
  });

  after(async () => {
    dest?.close();
    await gw?.stop();
  });

  it('answers 6 (TTL expired) once the connect timeout has passed, closes the client and its outgoing socket, and counts it', { timeout: 10_000 }, async () => {
    const fdsBefore = openFds();
    const c = await connect(gw.port);
    const read = reader(c);
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    const t0 = Date.now();
    c.write(connectRequest(dest.port));
    assert.deepEqual([...(await read(2))], [5, 0], 'no authentication selected');
    const reply = await read(10);
    const waited = Date.now() - t0;
    assert.equal(reply[1], 6, `reply code ${reply[1]}`);
    assert.ok(waited >= CONNECT_TIMEOUT - 50, `answered after the timeout, not before: ${waited} ms`);
    await closed;
    await until('the server to let the client go', () => gw.socks.clientCount === 0);
    assert.equal(gw.registry.totals.failures.ttl_expired, 1);
    await until('the outgoing socket and the client to be closed', () => openFds() <= fdsBefore);
  });

  it('abandons the connect when the client resets while it waits: its outgoing socket is closed at once, not at the timeout', { timeout: 10_000 }, async () => {
    const fdsBefore = openFds();
    const expiredBefore = gw.registry.totals.failures.ttl_expired ?? 0;
    const c = await connect(gw.port);
    const read = reader(c);
    c.write(connectRequest(dest.port));
    assert.deepEqual([...(await read(2))], [5, 0]);
    await until('the server to be connecting', () => openFds() >= fdsBefore + 3); // the client here, its fd there, the outgoing socket
    const t0 = Date.now();
    c.resetAndDestroy();
    await until('the server to drop the client', () => gw.socks.clientCount === 0);
    await until('the outgoing socket to be closed', () => openFds() <= fdsBefore);
    const took = Date.now() - t0;
    assert.ok(took < CONNECT_TIMEOUT, `closed ${took} ms after the reset, before the connect timeout`);
    await sleep(CONNECT_TIMEOUT + 200);
    assert.equal(gw.registry.totals.failures.ttl_expired ?? 0, expiredBefore, 'the abandoned connect did not time out later');
    assert.equal(gw.registry.list().length, 0, 'no connection record');
  });
});

describe('SOCKS CONNECT with the first bytes in the same write as the handshake', () => {
  let gw: Running;
  let echo: net.Server;
  /** both ends the test opened, closed in after() whatever happened: a failed run ends, it does not hang in echo.close() */
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): net.Socket => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    return s;
  };

  before(async () => {
    gw = await startSocks(5000);
    echo = net.createServer((s) => track(s).pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await gw?.stop();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  it('relays each client\'s own bytes, intact, when 40 clients send greeting, request and data in one write each at the same time', { timeout: 20_000 }, async () => {
    const port = (echo.address() as net.AddressInfo).port;
    const request = Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]); // greeting, then CONNECT 127.0.0.1:port
    const payloads = Array.from({ length: 40 }, (_, i) => {
      const payload = Buffer.alloc(1000 + i * 37);
      for (let j = 0; j < payload.length; j++) payload[j] = (i * 31 + j * 7) & 255;
      return payload;
    });
    const clients = (await Promise.all(payloads.map(() => connect(gw.port)))).map(track);
    const reads = clients.map((c) => reader(c));
    // all 40 written before the server (in this thread) runs again: it reads them in one batch,
    // each while the connects of the others are still in progress
    clients.forEach((c, i) => c.write(Buffer.concat([request, payloads[i]!])));
    const one = async (i: number): Promise<void> => {
      const read = reads[i]!;
      const payload = payloads[i]!;
      assert.deepEqual([...(await read(2))], [5, 0], `client ${i}: method reply`);
      const reply = await read(10);
      assert.equal(reply[1], 0, `client ${i}: reply code ${reply[1]}`);
      const back = await read(payload.length);
      assert.ok(back.equals(payload), `client ${i}: its own ${payload.length} bytes came back intact`);
      clients[i]!.destroy();
    };
    await Promise.all(payloads.map((_, i) => one(i)));
    await until('every connection to close', () => gw.registry.size === 0);
    assert.equal(gw.registry.totals.connectionsTotal, 40);
  });
});
