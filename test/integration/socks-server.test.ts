// The SOCKS server in this process (new SocksServer, a real store in a temporary directory, real
// sockets on loopback), for what needs a timeout smaller than the command line's whole seconds or
// a look at the server's own counters: the handshake timer of SOCKS4, and the bound on the peers
// a UDP association accepts replies from.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UserService } from '../../src/auth/users.js';
import { createLogger } from '../../src/log/logger.js';
import { CidrList } from '../../src/net/address.js';
import { PolicyService } from '../../src/policy/service.js';
import { ConnectionRegistry } from '../../src/relay/registry.js';
import { SocksServer } from '../../src/socks/server.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

interface Running {
  socks: SocksServer;
  registry: ConnectionRegistry;
  port: number;
  stop(): Promise<void>;
}

/** A SocksServer on 127.0.0.1:0 without auth, allow or deny lists. */
async function startSocks(handshakeTimeout: number): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-socks-server-'));
  const store = new SqliteStore(dir);
  const registry = new ConnectionRegistry();
  const socks = new SocksServer({
    requireAuth: false,
    users: new UserService(store),
    clientAllow: new CidrList([]),
    outbound: { policies: await PolicyService.open(store, {}), deny: new CidrList([]), connectTimeout: 5000 },
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
