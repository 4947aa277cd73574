// A mutual-exclusion lock that works across worker threads: one Int32 cell in a SharedArrayBuffer,
// taken with Atomics.compareExchange and waited for with a bounded Atomics.wait. Every thread that
// holds the same buffer shares the lock. Meant for critical sections of microseconds (a sysctl set,
// a socket(2), a restore), so waiting is bounded: a caller that cannot take it in time is told so
// instead of blocking its thread's event loop indefinitely.
import { threadId } from 'node:worker_threads';

const FREE = 0;
/** Bytes a lock's SharedArrayBuffer needs. */
export const THREAD_LOCK_BYTES = 4;

export type Locked<T> = { acquired: true; result: T } | { acquired: false; /** threadId of the holder when the wait ended */ holder: number };

/** A lock over a SharedArrayBuffer; reentrant within one thread. */
export class ThreadLock {
  private readonly cell: Int32Array;
  /** this thread's nesting depth: an inner section of the same thread must not wait for itself */
  private depth = 0;
  /** the cell value that marks this thread as the holder (threadId is 0 in the main thread) */
  private readonly me = threadId + 1;

  constructor(readonly buffer: SharedArrayBuffer) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < THREAD_LOCK_BYTES) {
      throw new TypeError(`a thread lock needs a SharedArrayBuffer of at least ${THREAD_LOCK_BYTES} bytes`);
    }
    this.cell = new Int32Array(buffer, 0, 1);
  }

  /** A new, free lock. */
  static create(): ThreadLock {
    return new ThreadLock(new SharedArrayBuffer(THREAD_LOCK_BYTES));
  }

  /** Runs `fn` holding the lock; waits at most `timeoutMs` for it, and does not run `fn` if it cannot have it. */
  run<T>(timeoutMs: number, fn: () => T): Locked<T> {
    if (this.depth > 0) return this.enter(fn);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const holder = Atomics.compareExchange(this.cell, 0, FREE, this.me);
      if (holder === FREE) break;
      const left = deadline - performance.now();
      if (left <= 0) return { acquired: false, holder: holder - 1 };
      // sleeps until the holder releases (notify) or the cell changes hands; never past the deadline
      Atomics.wait(this.cell, 0, holder, left);
    }
    try {
      return this.enter(fn);
    } finally {
      Atomics.store(this.cell, 0, FREE);
      Atomics.notify(this.cell, 0, 1);
    }
  }

  private enter<T>(fn: () => T): Locked<T> {
    this.depth++;
    try {
      return { acquired: true, result: fn() };
    } finally {
      this.depth--;
    }
  }
}
