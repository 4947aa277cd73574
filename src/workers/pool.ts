// The main thread's side of the SOCKS worker threads: starts them on the port the main thread
// bound, and asks them (with a timeout, so a stuck worker cannot hang the API) for their
// connections, totals and re-application of changed policies.
import { Worker } from 'node:worker_threads';
import type { Settings } from '../config/settings.js';
import type { Logger } from '../log/logger.js';
import type { ReapplyCounts } from '../transport/live.js';
import type { Snapshot } from '../relay/view.js';
import { dupFd } from '../kernel/sockopt.js';
import type { ToMain, ToWorker, WorkerInit } from './protocol.js';

const REQUEST_TIMEOUT_MS = 5000;

type Reply = Exclude<ToMain, { type: 'ready' } | { type: 'failed' }>;

interface Member {
  worker: Worker;
  thread: number;
  pending: Map<number, (m: Reply | null) => void>;
  exited: boolean;
  /** set once we stop it: its exit is expected */
  stopping: boolean;
  exit: Promise<void>;
}

export class WorkerPool {
  private readonly members: Member[] = [];
  private nextId = 1;

  private constructor(private readonly logger: Logger) {}

  /**
   * Starts `count` worker threads serving SOCKS on the main thread's listening socket `listenFd`
   * (each gets a dup of it). Resolves once all listen; rejects (stopping the others) if one fails.
   */
  static async start(count: number, settings: Settings, dataDir: string, listenFd: number, logger: Logger): Promise<WorkerPool> {
    const pool = new WorkerPool(logger);
    const url = new URL('./socks-worker.js', import.meta.url);
    try {
      await Promise.all(
        Array.from({ length: count }, (_, i) => {
          const init: WorkerInit = { settings, dataDir, thread: i + 1, threads: count + 1, fd: dupFd(listenFd) };
          const worker = new Worker(url, { workerData: init });
          let onExit = (): void => undefined;
          const exit = new Promise<void>((r) => (onExit = r));
          const member: Member = { worker, thread: i + 1, pending: new Map(), exited: false, stopping: false, exit };
          pool.members.push(member);
          return new Promise<void>((resolve, reject) => {
            worker.on('message', (m: ToMain) => {
              if (m.type === 'ready') resolve();
              else if (m.type === 'failed') reject(new Error(`SOCKS worker ${member.thread}: ${m.message}`));
              else {
                const done = member.pending.get(m.id);
                member.pending.delete(m.id);
                done?.(m);
              }
            });
            worker.on('error', (e) => {
              logger.error('SOCKS worker crashed', { worker: member.thread, error: e.stack ?? String(e) });
              reject(e);
            });
            worker.on('exit', (code) => {
              member.exited = true;
              onExit();
              for (const done of member.pending.values()) done(null);
              member.pending.clear();
              if (code !== 0 && !member.stopping) logger.error('SOCKS worker exited', { worker: member.thread, code });
            });
          });
        }),
      );
    } catch (e) {
      await pool.terminate();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.members.length;
  }

  private ask<T extends Reply>(member: Member, make: (id: number) => ToWorker, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T | null> {
    if (member.exited) return Promise.resolve(null);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        member.pending.delete(id);
        this.logger.warn('SOCKS worker did not answer', { worker: member.thread });
        resolve(null);
      }, timeoutMs);
      member.pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m as T | null);
      });
      member.worker.postMessage(make(id));
    });
  }

  private async askAll<T extends Reply>(make: (id: number) => ToWorker, timeoutMs?: number): Promise<T[]> {
    const answers = await Promise.all(this.members.map((m) => this.ask<T>(m, make, timeoutMs)));
    return answers.filter((a): a is Awaited<T> => a !== null) as T[];
  }

  /** Tells every worker to read the policies again and re-apply them; their counts. */
  async policiesChanged(): Promise<ReapplyCounts[]> {
    const r = await this.askAll<Extract<Reply, { type: 'reapplied' }>>((id) => ({ type: 'policies-changed', id }));
    return r.map((x) => x.counts);
  }

  userRemoved(username: string): void {
    for (const m of this.members) if (!m.exited) m.worker.postMessage({ type: 'user-removed', username } satisfies ToWorker);
  }

  async connections(limit: number): Promise<{ total: number; connections: Array<Record<string, unknown>> }> {
    const r = await this.askAll<Extract<Reply, { type: 'connections' }>>((id) => ({ type: 'connections', id, limit }));
    return { total: r.reduce((n, x) => n + x.total, 0), connections: r.flatMap((x) => x.connections) };
  }

  async snapshots(): Promise<Snapshot[]> {
    const r = await this.askAll<Extract<Reply, { type: 'snapshot' }>>((id) => ({ type: 'snapshot', id }));
    return r.map((x) => x.snapshot);
  }

  /** Closes the workers' listeners (and waits until they say so): no new connections from here on. */
  async stopAccepting(): Promise<void> {
    await this.askAll((id) => ({ type: 'stop-accepting', id }));
  }

  /** Stops the workers: they stop accepting, drain for graceMs, close the rest and exit. Their final totals. */
  async stop(graceMs: number): Promise<{ left: number; snapshots: Snapshot[] }> {
    const r = await this.askAll<Extract<Reply, { type: 'stopped' }>>((id) => ({ type: 'stop', id, graceMs }), graceMs + REQUEST_TIMEOUT_MS);
    await this.terminate();
    return { left: r.reduce((n, x) => n + x.left, 0), snapshots: r.map((x) => x.snapshot) };
  }

  /** Gives each worker a moment to exit by itself, then ends it. */
  private async terminate(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        m.stopping = true;
        const timer = new Promise<void>((r) => setTimeout(r, 1000).unref());
        await Promise.race([m.exit, timer]);
        if (!m.exited) await m.worker.terminate();
      }),
    );
  }
}
