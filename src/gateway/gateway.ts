// `edgeward start` put together: the store, the thread parts, the services (a supervisor loop over
// the enabled ones, in the main thread and, for those that run in every thread, in --workers
// worker threads), the REST API with each service's routes, and the orderly stop: stop accepting,
// drain for the grace period, close.
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { ThreadLogLines } from '../api/common.js';
import type { ServiceStateType } from '../api/schemas.js';
import { createApi } from '../api/server.js';
import { setupApiToken } from '../auth/api-token.js';
import { parseListenAddress } from '../config/common.js';
import { dupFd } from '../kernel/sockopt.js';
import { mptcpSysctlLock } from '../kernel/sysctl.js';
import { formatHostPort } from '../net/address.js';
import { readPemPair } from '../net/tls-files.js';
import { availableCongestionControls, mptcpCapabilities } from '../kernel/capabilities.js';
import type { Logger } from '../log/logger.js';
import type { MetricsJson } from '../metrics/registry.js';
import { statsFrom } from '../relay/metrics.js';
import { mergeMetrics } from '../metrics/registry.js';
import { closeServices, drain, SERVICE_SHARED_BYTES, stopServices, type Service } from '../runtime/service.js';
import { WorkerPool } from '../runtime/worker-pool.js';
import { addCounts, liveUpdateFrom, reapplyCounts, type ReapplyCounts } from '../transport/live.js';
import { openThreadParts } from './parts.js';
import { DEFINITIONS, type Settings } from './settings.js';
import type { WorkerInit, WorkerStopped } from './worker.js';

export interface Gateway {
  api: AddressInfo;
  /** Stops accepting, waits up to graceMs for open connections, then closes the rest. */
  stop(graceMs: number): Promise<void>;
}

/**
 * The young generation of a worker thread (V8's new space: two semi-spaces of a third each). A
 * connection's objects live for milliseconds; with Node's default (16 MiB semi-spaces) each
 * scavenge found ~40 % of them still alive and took 5-9 ms (median) under load, which every
 * connection of that thread waited for: the p99. With 2 MiB semi-spaces: 1-2 ms (bench/README.md).
 */
const WORKER_YOUNG_GENERATION_MB = 6;

/** A service's state for the API: the addresses among what it reported, and the rest as key=value. */
function serviceState(name: string, reported: Record<string, unknown> | undefined): ServiceStateType {
  if (!reported) return { name, running: false, listen: [], detail: null };
  const listen: string[] = [];
  const rest: string[] = [];
  for (const [k, v] of Object.entries(reported)) {
    if (typeof v === 'string' && /^\[?[0-9a-fA-F.:]+\]?:\d+$/.test(v)) listen.push(v);
    else rest.push(`${k}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  }
  return { name, running: true, listen, detail: rest.length > 0 ? rest.join(' ') : null };
}

/** --workers: "auto" = one thread per CPU, at most 8; or a number >= 1 (threads in all). */
export function threadCount(setting: string): number {
  if (setting === 'auto') return Math.min(8, Math.max(1, availableParallelism()));
  return Number(setting);
}

export async function startGateway(settings: Settings, logger: Logger, version: string, env: NodeJS.ProcessEnv = process.env): Promise<Gateway> {
  const dataDir = resolve(settings.data);
  const threads = threadCount(settings.workers);
  // checked before anything opens: a bad certificate stops the start, naming the file
  const apiTls = settings.apiTlsCert !== '' ? readPemPair(settings.apiTlsCert, settings.apiTlsKey, { cert: '--api-tls-cert', key: '--api-tls-key' }) : undefined;
  const { store, parts, upstream } = await openThreadParts(settings, dataDir, 0, threads);
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

  // every enabled service is created (nothing opened yet), so that the API can mount its routes
  const sharedMemory = new Map<string, SharedArrayBuffer>();
  const running = DEFINITIONS.filter((d) => d.enabled(settings)).map((def) => {
    const shared = new SharedArrayBuffer(SERVICE_SHARED_BYTES);
    if (def.everyThread) sharedMemory.set(def.name, shared);
    return { def, service: def.create({ settings, parts, logger, thread: 0, threads: def.everyThread ? threads : 1, shared }) };
  });
  const started: Service[] = [];
  // what each service reported when it started listening (its addresses, threads, modes)
  const reported = new Map<string, Record<string, unknown>>();
  let pool: WorkerPool | null = null;
  let stopping: Promise<void> | null = null;
  const api = await createApi({
    policies: parts.policies,
    users: parts.users,
    devices: parts.devices,
    registry: parts.registry,
    metrics: parts.metrics,
    remote: {
      connections: async (limit) => {
        const r = pool ? await pool.request<{ total: number; connections: Array<Record<string, unknown>> }>('connections', limit) : [];
        return { total: r.reduce((n, x) => n + x.total, 0), connections: r.flatMap((x) => x.connections) };
      },
      metrics: async () => (pool ? pool.request<MetricsJson>('metrics') : []),
      logs: async (since) => (pool ? pool.request<ThreadLogLines>('logs', since) : []),
    },
    services: () => DEFINITIONS.map((def) => serviceState(def.name, stopping === null ? reported.get(def.name) : undefined)),
    verifyToken: token.verify,
    reapply: async () => {
      const here = reapplyCounts(parts.registry.list(), (d) => parts.policies.decide(d));
      const there = pool ? await pool.request<ReapplyCounts>('policies-changed') : [];
      return liveUpdateFrom(there.reduce(addCounts, here));
    },
    plugins: running.flatMap(({ def, service }) => [
      ...(def.routes ? [{ prefix: '/api/v1', plugin: def.routes(service) }] : []),
      ...(def.pages ? [{ prefix: '', plugin: def.pages(service) }] : []),
    ]),
    logger,
    version,
    allowInsecureLogin: settings.allowInsecureLogin,
    ...(apiTls ? { tls: apiTls } : {}),
  });
  parts.users.on('removed', (username: string) => pool?.notify('user-removed', username));

  const apiAddr = parseListenAddress(settings.api, '--api');
  const listening: Record<string, unknown> = {};
  try {
    for (const { def, service } of running) {
      started.push(service);
      const r = await service.listen();
      reported.set(def.name, r);
      Object.assign(listening, r);
    }
    if (threads > 1) {
      // the services that run in every thread run in the workers only: the main thread keeps the
      // API, the store's writes and the other services, and its own collector pauses (a young
      // generation of 16 MB semi-spaces here) stay out of the connections' way
      const shared = running.filter((r) => r.def.everyThread);
      pool = await WorkerPool.start(
        threads,
        new URL('./worker.js', import.meta.url),
        (thread): WorkerInit => ({
          settings,
          dataDir,
          thread,
          threads,
          sysctlLock: mptcpSysctlLock(),
          fds: Object.fromEntries(shared.map((r) => [r.def.name, (r.service.sharedFds?.() ?? []).map(dupFd)])),
          shared: Object.fromEntries(sharedMemory),
        }),
        logger,
        { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
      );
      // the workers accept on dups of the listening sockets: the main thread's instances let go
      await Promise.all(shared.map((r) => r.service.stopAccepting()));
    }
    await api.listen({ host: apiAddr.host, port: apiAddr.port });
  } catch (e) {
    await stopServices(started);
    await pool?.terminate();
    await api.close();
    await store.close();
    throw e;
  }
  const apiBound = api.server.address() as AddressInfo;
  logger.info('listening', {
    ...listening,
    api: `${apiTls ? 'https' : 'http'}://${formatHostPort(apiBound.address, apiBound.port)}`,
    services: running.map((r) => r.def.name),
    ...(upstream ? { upstream: upstream.display } : {}),
  });

  const stop = (graceMs: number): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all([...running.map((r) => r.service.stopAccepting()), pool?.request('stop-accepting')]);
      logger.info('stopping: no new connections; draining', { open: parts.registry.size, graceSeconds: graceMs / 1000 });
      const [left, workers] = await Promise.all([drain(parts.registry, graceMs), pool ? pool.stop<WorkerStopped>('stop', graceMs) : []]);
      for (const e of await closeServices(running.map((r) => r.service))) logger.error('error while stopping a service', { error: e.message });
      const closed = left + workers.reduce((n, w) => n + w.left, 0);
      if (closed > 0) logger.warn('grace period over: closed open connections', { closed });
      const totals = statsFrom((await mergeMetrics([await parts.metrics.json(), ...workers.map((w) => w.metrics)]).getMetricsAsJSON()) as MetricsJson);
      await api.close();
      await store.close();
      logger.info('stopped', totals as unknown as Record<string, unknown>);
    })();
    return stopping;
  };

  return { api: apiBound, stop };
}
