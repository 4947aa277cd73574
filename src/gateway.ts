// Puts the parts together for `edgeward start`: store, policies, users, SOCKS listener, REST API,
// and the orderly stop (stop accepting, drain for a grace period, close the store).
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { createApi } from './api/server.js';
import { setupApiToken } from './auth/api-token.js';
import { UserService } from './auth/users.js';
import { parseInterceptAddress, parseKeepAlive, parseListenAddress, type Settings } from './config/settings.js';
import { availableCongestionControls, mptcpCapabilities } from './kernel/capabilities.js';
import type { Logger } from './log.js';
import { CidrList } from './policy/address.js';
import { reapplyPolicies } from './policy/live.js';
import { PolicyService } from './policy/service.js';
import { ConnectionRegistry } from './relay/registry.js';
import { InterceptServer } from './intercept/server.js';
import type { Transport } from './policy/types.js';
import { parseUpstream, type Upstream } from './socks/client.js';
import { SocksServer } from './socks/server.js';
import type { OutboundSettings } from './transport/outbound.js';
import { SqliteStore } from './store/sqlite-store.js';

export interface Gateway {
  socks: AddressInfo;
  api: AddressInfo;
  /** the TPROXY listeners, when --intercept is given */
  intercept: AddressInfo[];
  registry: ConnectionRegistry;
  policies: PolicyService;
  /** Stops accepting, waits up to graceMs for open connections, then closes the rest. */
  stop(graceMs: number): Promise<void>;
}

export async function startGateway(settings: Settings, logger: Logger, version: string, env: NodeJS.ProcessEnv = process.env): Promise<Gateway> {
  const dataDir = resolve(settings.data);
  const store = new SqliteStore(dataDir);
  const base: Transport = {};
  if (settings.noDelay) base.noDelay = true;
  if (settings.keepalive !== '') base.keepAlive = parseKeepAlive(settings.keepalive, '--keepalive');
  const policies = await PolicyService.open(store, base);
  const users = new UserService(store);
  const registry = new ConnectionRegistry();
  const token = await setupApiToken(store, dataDir, env.EDGEWARD_API_TOKEN);
  if (token.file) logger.info(token.generated ? 'generated API token' : 'API token from data directory', { file: token.file });
  else logger.info('API token from EDGEWARD_API_TOKEN');

  const mptcp = mptcpCapabilities();
  logger.info('kernel', {
    mptcp: mptcp.enabled ? 'enabled' : 'unavailable (MPTCP policies fall back to TCP)',
    schedulers: mptcp.schedulers,
    pathManagers: mptcp.pathManagers,
    congestion: availableCongestionControls(),
  });
  if (settings.socksAuth && (await users.count()) === 0) {
    logger.warn('--socks-auth is on but there are no users yet: add one with `edgeward user add NAME`');
  }

  const upstream = settings.upstream !== '' ? (parseUpstream(settings.upstream, '--upstream') as Upstream) : null;
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
    outbound,
    registry,
    handshakeTimeout: settings.handshakeTimeout * 1000,
    idleTimeout: settings.idleTimeout * 1000,
    maxConnections: settings.maxConnections,
    logger,
  });
  const api = await createApi({
    policies,
    users,
    registry,
    verifyToken: token.verify,
    reapply: () => reapplyPolicies(registry, policies),
    logger,
    version,
  });

  const socksAddr = parseListenAddress(settings.socks, '--socks');
  const apiAddr = parseListenAddress(settings.api, '--api');
  const intercept = settings.intercept !== ''
    ? new InterceptServer({ outbound, registry, idleTimeout: settings.idleTimeout * 1000, maxConnections: settings.maxConnections, transparentSource: settings.transparentSource, logger })
    : null;
  let socksBound: AddressInfo & { mptcp: boolean };
  let interceptBound: AddressInfo[] = [];
  try {
    socksBound = await socks.listen(socksAddr.host, socksAddr.port, { mptcp: settings.socksMptcp });
    if (intercept) {
      const at = parseInterceptAddress(settings.intercept);
      interceptBound = await intercept.listen(at.host, at.port).catch((e: unknown) => {
        const code = (e as { code?: string }).code;
        throw new Error(`--intercept ${settings.intercept}: ${(e as Error).message}${code === 'EPERM' ? ' (IP_TRANSPARENT needs root or CAP_NET_ADMIN)' : ''}`);
      });
    }
    await api.listen({ host: apiAddr.host, port: apiAddr.port });
  } catch (e) {
    await socks.close();
    await intercept?.close();
    await api.close();
    await store.close();
    throw e;
  }
  const apiBound = api.server.address() as AddressInfo;
  const fmt = (a: AddressInfo): string => (a.family === 'IPv6' || a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  logger.info('listening', {
    socks: fmt(socksBound),
    ...(settings.socksMptcp ? { socksMptcp: socksBound.mptcp } : {}),
    api: `http://${fmt(apiBound)}`,
    auth: settings.socksAuth,
    ...(intercept ? { intercept: interceptBound.map(fmt), transparentSource: settings.transparentSource } : {}),
    ...(upstream ? { upstream: upstream.display } : {}),
  });

  let stopping: Promise<void> | null = null;
  const stop = (graceMs: number): Promise<void> => {
    stopping ??= (async () => {
      const closing = Promise.all([socks.close(), intercept?.close()]);
      logger.info('stopping: no new connections; draining', { open: registry.size, graceSeconds: graceMs / 1000 });
      const deadline = Date.now() + graceMs;
      while (registry.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (registry.size > 0) {
        logger.warn('grace period over: closing open connections', { open: registry.size });
        for (const rec of registry.list()) {
          rec.clientSocket.destroy();
          rec.outSocket?.destroy();
        }
      }
      await closing;
      await api.close();
      await store.close();
      logger.info('stopped', registry.snapshot() as unknown as Record<string, unknown>);
    })();
    return stopping;
  };

  return { socks: socksBound, api: apiBound, intercept: interceptBound, registry, policies, stop };
}
