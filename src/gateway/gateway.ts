// Puts the parts together for `edgeward start`: store, policies, users, the SOCKS listener (in the
// main thread and in --workers worker threads on the same port), the TPROXY listener, the REST API,
// the managed firewall, and the orderly stop (stop accepting, drain for a grace period, close).
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { createApi } from '../api/server.js';
import { setupApiToken } from '../auth/api-token.js';
import { parseInterceptAddress, parseListenAddress, type Settings } from '../config/settings.js';
import { applyFirewall, NFT_TABLE, removeFirewall, type FirewallSpec } from '../intercept/firewall.js';
import { InterceptServer } from '../intercept/server.js';
import { availableCongestionControls, mptcpCapabilities } from '../kernel/capabilities.js';
import type { Logger } from '../log/logger.js';
import { addCounts, liveUpdateFrom, reapplyCounts } from '../transport/live.js';
import type { PolicyService } from '../policy/service.js';
import type { ConnectionRegistry } from '../relay/registry.js';
import { mergeSnapshots } from '../relay/view.js';
import { WorkerPool } from '../workers/pool.js';
import { drain, openSocksServices } from '../workers/services.js';

export interface Gateway {
  socks: AddressInfo;
  api: AddressInfo;
  /** the TPROXY listeners, when --intercept is given */
  intercept: AddressInfo[];
  /** threads serving SOCKS, the main thread included */
  socksThreads: number;
  registry: ConnectionRegistry;
  policies: PolicyService;
  /** Stops accepting, waits up to graceMs for open connections, then closes the rest. */
  stop(graceMs: number): Promise<void>;
}

/** --workers: "auto" = one SOCKS thread per CPU, at most 8; or a number >= 1 (threads in all). */
export function socksThreadCount(setting: string): number {
  if (setting === 'auto') return Math.min(8, Math.max(1, availableParallelism()));
  return Number(setting);
}

export async function startGateway(settings: Settings, logger: Logger, version: string, env: NodeJS.ProcessEnv = process.env): Promise<Gateway> {
  const dataDir = resolve(settings.data);
  const threads = socksThreadCount(settings.workers);
  const main = await openSocksServices(settings, dataDir, logger, 0, threads);
  const { store, policies, users, registry, outbound, socks, upstream } = main;
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

  let pool: WorkerPool | null = null;
  let firewall: FirewallSpec | null = null;
  const api = await createApi({
    policies,
    users,
    registry,
    remote: {
      connections: (limit) => (pool ? pool.connections(limit) : Promise.resolve({ total: 0, connections: [] })),
      snapshots: () => (pool ? pool.snapshots() : Promise.resolve([])),
    },
    verifyToken: token.verify,
    reapply: async () => {
      const here = reapplyCounts(registry.list(), (d) => policies.decide(d));
      const there = pool ? await pool.policiesChanged() : [];
      return liveUpdateFrom(there.reduce(addCounts, here));
    },
    logger,
    version,
  });
  users.on('removed', (username) => pool?.userRemoved(username));

  const socksAddr = parseListenAddress(settings.socks, '--socks');
  const apiAddr = parseListenAddress(settings.api, '--api');
  const intercept = settings.intercept !== ''
    ? new InterceptServer({ outbound, registry, idleTimeout: settings.idleTimeout * 1000, maxConnections: settings.maxConnections, transparentSource: settings.transparentSource, clientCongestion: settings.clientCongestion !== '' ? settings.clientCongestion : undefined, logger })
    : null;
  let socksBound: AddressInfo & { mptcp: boolean };
  let interceptBound: AddressInfo[] = [];
  try {
    socksBound = await socks.listen(socksAddr.host, socksAddr.port, { mptcp: settings.socksMptcp, shareable: threads > 1 });
    if (threads > 1) pool = await WorkerPool.start(threads - 1, settings, dataDir, socks.listenFd!, logger);
    if (intercept) {
      const at = parseInterceptAddress(settings.intercept);
      interceptBound = await intercept.listen(at.host, at.port).catch((e: unknown) => {
        const code = (e as { code?: string }).code;
        throw new Error(`--intercept ${settings.intercept}: ${(e as Error).message}${code === 'EPERM' ? ' (IP_TRANSPARENT needs root or CAP_NET_ADMIN)' : ''}`);
      });
      if (settings.firewall) {
        firewall = { port: at.port, interfaces: settings.interceptInterface, sources: [], excludes: [], dports: [] };
        const applied = await applyFirewall(firewall).catch((e: unknown) => {
          firewall = null;
          throw new Error(`--firewall: ${(e as Error).message}`);
        });
        logger.info('firewall applied', { table: NFT_TABLE, interfaces: settings.interceptInterface, changes: applied.changes });
      }
    }
    await api.listen({ host: apiAddr.host, port: apiAddr.port });
  } catch (e) {
    if (firewall) await removeFirewall().catch(() => undefined);
    await socks.close();
    await pool?.stop(0);
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
    socksThreads: threads,
    api: `http://${fmt(apiBound)}`,
    auth: settings.socksAuth,
    ...(intercept ? { intercept: interceptBound.map(fmt), transparentSource: settings.transparentSource } : {}),
    ...(upstream ? { upstream: upstream.display } : {}),
  });

  let stopping: Promise<void> | null = null;
  const stop = (graceMs: number): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all([socks.close(), intercept?.close(), pool?.stopAccepting()]);
      logger.info('stopping: no new connections; draining', { open: registry.size, graceSeconds: graceMs / 1000 });
      const [left, workers] = await Promise.all([drain(registry, graceMs), pool?.stop(graceMs)]);
      socks.destroyClients();
      intercept?.destroyClients();
      const closed = left + (workers?.left ?? 0);
      if (closed > 0) logger.warn('grace period over: closed open connections', { closed });
      if (firewall) {
        // the listener is closed: take the rules away so the LAN's traffic flows as before
        await removeFirewall().then(
          (r) => logger.info('firewall removed', { table: NFT_TABLE, changes: r.changes }),
          (e: unknown) => logger.error('firewall: could not remove the rules; run `edgeward firewall remove`', { error: (e as Error).message }),
        );
      }
      const totals = (workers?.snapshots ?? []).reduce(mergeSnapshots, registry.snapshot());
      await api.close();
      await store.close();
      logger.info('stopped', totals as unknown as Record<string, unknown>);
    })();
    return stopping;
  };

  return { socks: socksBound, api: apiBound, intercept: interceptBound, socksThreads: threads, registry, policies, stop };
}
