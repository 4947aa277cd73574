// A worker thread serving SOCKS: its own event loop, store handle, policy snapshot and registry,
// accepting on a dup of the main thread's listening socket (fds belong to the process: one accept
// queue feeds every thread, so a busy thread simply accepts less). The main thread owns the API;
// it asks workers over messages (protocol.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../log/logger.js';
import { reapplyCounts } from '../transport/live.js';
import { connectionView } from '../relay/view.js';
import type { ToMain, ToWorker, WorkerInit } from './protocol.js';
import { drain, openSocksServices } from './services.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const send = (m: ToMain): void => port.postMessage(m);
const logger = createLogger({ level: init.settings.logLevel, format: init.settings.logFormat }, { worker: init.thread });

async function main(): Promise<void> {
  const s = await openSocksServices(init.settings, init.dataDir, logger, init.thread, init.threads);
  await s.socks.listen('', 0, { fd: init.fd });
  port.on('message', (m: ToWorker) => {
    handle(m).catch((e: unknown) => logger.error('worker: request failed', { type: m.type, error: String(e) }));
  });
  send({ type: 'ready' });

  async function handle(m: ToWorker): Promise<void> {
    switch (m.type) {
      case 'policies-changed':
        await s.policies.refresh();
        send({ type: 'reapplied', id: m.id, counts: reapplyCounts(s.registry.list(), (d) => s.policies.decide(d)) });
        return;
      case 'user-removed':
        s.users.forget(m.username);
        return;
      case 'connections': {
        const all = s.registry.list();
        send({ type: 'connections', id: m.id, total: all.length, connections: all.slice(0, m.limit).map(connectionView) });
        return;
      }
      case 'snapshot':
        send({ type: 'snapshot', id: m.id, snapshot: s.registry.snapshot() });
        return;
      case 'stop-accepting':
        await s.socks.close();
        send({ type: 'not-accepting', id: m.id });
        return;
      case 'stop': {
        await s.socks.close();
        const left = await drain(s.registry, m.graceMs);
        s.socks.destroyClients();
        await s.store.close();
        send({ type: 'stopped', id: m.id, left, snapshot: s.registry.snapshot() });
        port.close();
        return;
      }
    }
  }
}

main().catch((e: unknown) => {
  send({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
  port.close();
});
