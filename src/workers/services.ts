// What every thread that serves SOCKS needs, built the same way in the main thread and in each
// worker thread: the store (one SQLite file, WAL, shared by all threads), the policy snapshot, the
// users, a connection registry of its own, the outbound settings and the SOCKS server.
import { UserService } from '../auth/users.js';
import { parseKeepAlive, type Settings } from '../config/settings.js';
import type { Logger } from '../log/logger.js';
import { CidrList } from '../net/address.js';
import { PolicyService } from '../policy/service.js';
import type { Transport } from '../policy/types.js';
import { ConnectionRegistry } from '../relay/registry.js';
import { parseUpstream, type Upstream } from '../policy/via.js';
import { SocksServer } from '../socks/server.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { OutboundSettings } from '../transport/outbound.js';

export interface SocksServices {
  store: SqliteStore;
  policies: PolicyService;
  users: UserService;
  registry: ConnectionRegistry;
  outbound: OutboundSettings;
  socks: SocksServer;
  upstream: Upstream | null;
}

/** The transport defaults of the command line (--no-delay, --keepalive), beneath every policy. */
export function baseTransport(settings: Settings): Transport {
  const base: Transport = {};
  if (settings.noDelay) base.noDelay = true;
  if (settings.keepalive !== '') base.keepAlive = parseKeepAlive(settings.keepalive, '--keepalive');
  return base;
}

/**
 * Opens the store and builds the SOCKS side for one thread. `thread`/`threads` number the
 * registry's connection ids apart and split --max-connections between the threads.
 */
export async function openSocksServices(settings: Settings, dataDir: string, logger: Logger, thread = 0, threads = 1): Promise<SocksServices> {
  const store = new SqliteStore(dataDir);
  const policies = await PolicyService.open(store, baseTransport(settings));
  const users = new UserService(store);
  const registry = new ConnectionRegistry(thread + 1, threads);
  const upstream = settings.upstream !== '' ? ((r) => (r.ok ? r.value : null))(parseUpstream(settings.upstream, '--upstream')) : null; // resolveSettings has checked it
  const outbound: OutboundSettings = {
    policies,
    deny: CidrList.parse(settings.socksDeny, '--socks-deny'),
    connectTimeout: settings.connectTimeout * 1000,
    upstream,
    bindOutgoing: settings.bindOutgoing !== '' ? settings.bindOutgoing : undefined,
  };
  const socks = new SocksServer({
    requireAuth: settings.socksAuth,
    users,
    clientAllow: CidrList.parse(settings.socksAllow, '--socks-allow'),
    clientCongestion: settings.clientCongestion !== '' ? settings.clientCongestion : undefined,
    outbound,
    registry,
    handshakeTimeout: settings.handshakeTimeout * 1000,
    idleTimeout: settings.idleTimeout * 1000,
    maxConnections: Math.max(1, Math.ceil(settings.maxConnections / threads)),
    logger,
  });
  return { store, policies, users, registry, outbound, socks, upstream };
}

/** Waits up to graceMs for the registry to empty, then closes what is left. */
export async function drain(registry: ConnectionRegistry, graceMs: number): Promise<number> {
  const deadline = Date.now() + graceMs;
  while (registry.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const left = registry.size;
  for (const rec of registry.list()) {
    rec.clientSocket.destroy();
    rec.outSocket?.destroy();
  }
  return left;
}
