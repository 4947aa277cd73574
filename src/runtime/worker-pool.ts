// Worker threads of the gateway, and the generic request/notify messages between them and the main
// thread. A worker module answers named requests with a handler table (`serveRequests`); the main
// thread asks all workers at once, with a timeout, so that a stuck worker cannot hang the API.
import { parentPort, Worker, type ResourceLimits } from 'node:worker_threads';
import type { Logger } from '../log/logger.js';

const REQUEST_TIMEOUT_MS = 5000;

export type ToWorker = { type: 'request'; id: number; method: string; arg?: unknown } | { type: 'notify'; method: string; arg?: unknown };
export type ToMain = { type: 'ready' } | { type: 'failed'; message: string } | { type: 'reply'; id: number; value: unknown } | { type: 'error'; id: number; message: string };

interface Member {
  worker: Worker;
  thread: number;
  pending: Map<number, (m: { value: unknown } | null) => void>;
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
   * Starts `count` worker threads running `module`, each with the workerData `init(thread)` (threads
   * are numbered 1..count; the main thread is 0) and `resourceLimits` (V8 heap sizes). Resolves once all are ready; rejects (stopping the
   * others) if one fails.
   */
  static async start(count: number, module: URL, init: (thread: number) => unknown, logger: Logger, resourceLimits?: ResourceLimits): Promise<WorkerPool> {
    const pool = new WorkerPool(logger);
    try {
      await Promise.all(
        Array.from({ length: count }, (_, i) => {
          const thread = i + 1;
          const worker = new Worker(module, { workerData: init(thread), ...(resourceLimits ? { resourceLimits } : {}) });
          let onExit = (): void => undefined;
          const exit = new Promise<void>((r) => (onExit = r));
          const member: Member = { worker, thread, pending: new Map(), exited: false, stopping: false, exit };
          pool.members.push(member);
          return new Promise<void>((resolve, reject) => {
            worker.on('message', (m: ToMain) => {
              if (m.type === 'ready') resolve();
              else if (m.type === 'failed') reject(new Error(`worker ${thread}: ${m.message}`));
              else {
                const done = member.pending.get(m.id);
                member.pending.delete(m.id);
                if (m.type === 'error') logger.error('worker: request failed', { worker: thread, error: m.message });
                done?.(m.type === 'reply' ? { value: m.value } : null);
              }
            });
            worker.on('error', (e) => {
              logger.error('worker crashed', { worker: thread, error: e.stack ?? String(e) });
              reject(e);
            });
            worker.on('exit', (code) => {
              member.exited = true;
              onExit();
              for (const done of member.pending.values()) done(null);
              member.pending.clear();
              if (code !== 0 && !member.stopping) logger.error('worker exited', { worker: thread, code });
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

  private ask(member: Member, method: string, arg: unknown, timeoutMs: number): Promise<{ value: unknown } | null> {
    if (member.exited) return Promise.resolve(null);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        member.pending.delete(id);
        this.logger.warn('worker did not answer', { worker: member.thread, method });
        resolve(null);
      }, timeoutMs);
      member.pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      member.worker.postMessage({ type: 'request', id, method, arg } satisfies ToWorker);
    });
  }

  /** Asks every worker; the answers of those that answered in time. */
  async request<T>(method: string, arg?: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T[]> {
    const answers = await Promise.all(this.members.map((m) => this.ask(m, method, arg, timeoutMs)));
    return answers.filter((a): a is { value: unknown } => a !== null).map((a) => a.value as T);
  }

  /** Tells every worker something, without waiting. */
  notify(method: string, arg?: unknown): void {
    for (const m of this.members) if (!m.exited) m.worker.postMessage({ type: 'notify', method, arg } satisfies ToWorker);
  }

  /** Asks every worker to stop (request `method`, which may take up to graceMs), then ends them. */
  async stop<T>(method: string, graceMs: number): Promise<T[]> {
    const r = await this.request<T>(method, graceMs, graceMs + REQUEST_TIMEOUT_MS);
    await this.terminate();
    return r;
  }

  /** Gives each worker a moment to exit by itself, then ends it. */
  async terminate(): Promise<void> {
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

export type Handlers = Record<string, (arg: unknown) => unknown>;

/** In a worker thread: answers the main thread's requests with `handlers`, and says it is ready. */
export function serveRequests(handlers: Handlers): void {
  const port = parentPort!;
  port.on('message', (m: ToWorker) => {
    const fn = handlers[m.method];
    const run = async (): Promise<unknown> => {
      if (!fn) throw new Error(`no handler for "${m.method}"`);
      return fn(m.arg);
    };
    run().then(
      (value) => {
        if (m.type === 'request') port.postMessage({ type: 'reply', id: m.id, value } satisfies ToMain);
      },
      (e: unknown) => {
        if (m.type === 'request') port.postMessage({ type: 'error', id: m.id, message: e instanceof Error ? e.message : String(e) } satisfies ToMain);
      },
    );
  });
  port.postMessage({ type: 'ready' } satisfies ToMain);
}

/** In a worker thread: reports a start-up failure to the main thread. */
export function reportStartFailure(e: unknown): void {
  parentPort?.postMessage({ type: 'failed', message: e instanceof Error ? e.message : String(e) } satisfies ToMain);
  parentPort?.close();
}

/** In a worker thread: closes the channel (after the final reply), so the thread can exit. */
export function closeChannel(): void {
  setImmediate(() => parentPort?.close());
}
