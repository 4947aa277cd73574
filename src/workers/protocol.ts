// Messages between the main thread and the SOCKS worker threads.
import type { Settings } from '../config/settings.js';
import type { ReapplyCounts } from '../transport/live.js';
import type { Snapshot } from '../relay/view.js';

export interface WorkerInit {
  settings: Settings;
  dataDir: string;
  /** this worker's number, 1.. (the main thread is 0) */
  thread: number;
  threads: number;
  /** a dup of the main thread's listening SOCKS socket: all threads accept from one queue */
  fd: number;
}

export type ToWorker =
  | { type: 'policies-changed'; id: number }
  | { type: 'user-removed'; username: string }
  | { type: 'connections'; id: number; limit: number }
  | { type: 'snapshot'; id: number }
  | { type: 'stop-accepting'; id: number }
  | { type: 'stop'; id: number; graceMs: number };

export type ToMain =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'reapplied'; id: number; counts: ReapplyCounts }
  | { type: 'connections'; id: number; total: number; connections: Array<Record<string, unknown>> }
  | { type: 'snapshot'; id: number; snapshot: Snapshot }
  | { type: 'not-accepting'; id: number }
  | { type: 'stopped'; id: number; left: number; snapshot: Snapshot };
