// A worker thread of the gateway: its own event loop, store handle, policy snapshot, registry and
// metrics, running the services that run in every thread on dups of the main thread's listening
// sockets (fds belong to the process: one accept queue feeds every thread, so a busy thread simply
// accepts less). The main thread owns the API and asks workers over messages (runtime/worker-pool).
import { workerData } from 'node:worker_threads';
import { useMptcpSysctlLock } from '../kernel/sysctl.js';
import { createLogger } from '../log/logger.js';
import { recentLog, sinceFor } from '../log/recent.js';
import type { MetricsJson } from '../metrics/registry.js';
import { connectionView } from '../relay/view.js';
import { closeServices, drain, type Service } from '../runtime/service.js';
import { closeChannel, reportStartFailure, serveRequests } from '../runtime/worker-pool.js';
import { reapplyCounts } from '../transport/live.js';
import { openThreadParts } from './parts.js';
import { DEFINITIONS, type Settings } from './settings.js';

export interface WorkerInit {
  settings: Settings;
  dataDir: string;
  /** this worker's number, 1.. (the main thread is 0) */
  thread: number;
  threads: number;
  /** per service: dups of the listening fds its main-thread instance shared */
  fds: Record<string, number[]>;
  /** per service that runs in every thread: the memory its instances share (ServiceContext.shared) */
  shared: Record<string, SharedArrayBuffer>;
  /** the process-wide lock around the MPTCP sysctl swap (kernel/sysctl.ts) */
  sysctlLock: SharedArrayBuffer;
}

/** A worker's answer to "stop": how many connections the grace period left, and its final metrics. */
export interface WorkerStopped {
  left: number;
  metrics: MetricsJson;
}

async function main(init: WorkerInit): Promise<void> {
  // before the first socket: the MPTCP scheduler/path manager swap is exclusive across threads
  useMptcpSysctlLock(init.sysctlLock);
  const logger = createLogger({ level: init.settings.logLevel, format: init.settings.logFormat }, { worker: init.thread });
  const { store, parts } = await openThreadParts(init.settings, init.dataDir, init.thread, init.threads);
  const services: Service[] = [];
  for (const def of DEFINITIONS) {
    if (!def.everyThread || !def.enabled(init.settings)) continue;
    const service = def.create({ settings: init.settings, parts, logger, thread: init.thread, threads: init.threads, inheritedFds: init.fds[def.name] ?? [], shared: init.shared[def.name] });
    services.push(service);
    await service.listen();
  }
  serveRequests({
    'policies-changed': async () => {
      await parts.policies.refresh();
      return reapplyCounts(parts.registry.list(), (d) => parts.policies.decide(d));
    },
    'user-removed': (username) => parts.users.forget(String(username)),
    connections: (limit) => {
      const all = parts.registry.list();
      return { total: all.length, connections: all.slice(0, Number(limit)).map(connectionView) };
    },
    metrics: () => parts.metrics.json(),
    logs: (since) => ({ thread: init.thread, ...recentLog.since(sinceFor(since as Record<number, number>, init.thread)) }),
    'stop-accepting': async () => {
      await Promise.all(services.map((s) => s.stopAccepting()));
      return true;
    },
    stop: async (graceMs): Promise<WorkerStopped> => {
      await Promise.all(services.map((s) => s.stopAccepting()));
      const left = await drain(parts.registry, Number(graceMs));
      await closeServices(services);
      const metrics = await parts.metrics.json();
      await store.close();
      closeChannel();
      return { left, metrics };
    },
  });
}

main(workerData as WorkerInit).catch(reportStartFailure);
