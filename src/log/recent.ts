// The last lines this thread logged, kept in memory for the console's log view (GET /api/v1/logs
// and the `log` events of /api/v1/stream). A bounded ring of the JSON lines as written (secrets
// already redacted); each line has a sequence number, so a reader asks for what came after the last
// one it saw.

/** Lines kept per thread. */
export const RECENT_LINES = 1000;

export interface RecentLines {
  /** the sequence number of the newest line (0: none yet) */
  last: number;
  /** JSON lines after the `since` asked for, oldest first */
  lines: string[];
}

export class RecentLog {
  private readonly ring: string[] = [];
  private next = 0;
  private seq = 0;

  constructor(private readonly capacity = RECENT_LINES) {}

  push(line: string): void {
    const text = line.endsWith('\n') ? line.slice(0, -1) : line;
    if (this.ring.length < this.capacity) this.ring.push(text);
    else this.ring[this.next] = text;
    this.next = (this.next + 1) % this.capacity;
    this.seq++;
  }

  /** The lines after sequence number `since` that are still kept (all of them for 0). */
  since(since = 0): RecentLines {
    const n = Math.max(0, Math.min(this.ring.length, this.seq - since));
    const lines: string[] = [];
    const start = (this.next - n + this.capacity * 2) % this.capacity;
    for (let i = 0; i < n; i++) lines.push(this.ring[(start + i) % this.ring.length]!);
    return { last: this.seq, lines };
  }
}

/** The key of a `since` record that stands for every thread it does not name. */
export const ALL_THREADS = -1;

/** A thread's own entry of a `since` record (thread -> sequence number), or the one for all. */
export function sinceFor(since: Record<number, number>, thread: number): number {
  return since[thread] ?? since[ALL_THREADS] ?? 0;
}

/** This thread's recent lines: every logger of the thread writes here too. */
export const recentLog = new RecentLog();
