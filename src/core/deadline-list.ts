// Deadlines of many short-lived things (a client's handshake, a connect in progress) on one timer:
// the things themselves are the links of an ordered list (no object per deadline), and one Node
// timer waits for the earliest. Arming and disarming cost a few field writes. A setTimeout per
// connection cost a Timeout object, its insertion into Node's timer lists and their priority queue,
// and the clearTimeout, twice per proxied connection (bench/README.md).

/** Something with a deadline: the list keeps its place in these fields (start them at 0 / null). */
export interface Expiring {
  /** Date.now() at which it expires, while armed */
  deadlineAt: number;
  deadlinePrev: Expiring | null;
  deadlineNext: Expiring | null;
  /** the list it is armed in; null when not armed */
  deadlineList: DeadlineList | null;
  /** its deadline passed (it is no longer armed); runs in a timer callback of Node's loop */
  onDeadline(): void;
}

/** An Expiring with its links in their start state: what a handshake or a dial extends. */
export abstract class DeadlineItem implements Expiring {
  deadlineAt = 0;
  deadlinePrev: Expiring | null = null;
  deadlineNext: Expiring | null = null;
  deadlineList: DeadlineList | null = null;
  abstract onDeadline(): void;
}

/** Deadlines in ascending order; the items of one list mostly share one duration, so arming appends. */
export class DeadlineList {
  private head: Expiring | null = null;
  private tail: Expiring | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** when the timer fires (Date.now() scale) */
  private timerAt = 0;

  /**
   * Arms `e` to expire `ms` from `now` (re-arms it when armed). The timer does not keep Node's loop
   * alive: what waits for a deadline (a socket in the thread's epoll set) does.
   */
  arm(e: Expiring, ms: number, now = Date.now()): void {
    if (e.deadlineList) e.deadlineList.disarm(e);
    const at = now + ms;
    e.deadlineAt = at;
    e.deadlineList = this;
    let after = this.tail;
    while (after && after.deadlineAt > at) after = after.deadlinePrev;
    e.deadlinePrev = after;
    e.deadlineNext = after ? after.deadlineNext : this.head;
    if (e.deadlineNext) e.deadlineNext.deadlinePrev = e;
    else this.tail = e;
    if (after) after.deadlineNext = e;
    else this.head = e;
    if (!this.timer || at < this.timerAt) this.schedule(at, now);
  }

  /** Takes `e` out of the list, if it is armed in it; its onDeadline will not run. */
  disarm(e: Expiring): void {
    if (e.deadlineList !== this) return;
    const { deadlinePrev: prev, deadlineNext: next } = e;
    if (prev) prev.deadlineNext = next;
    else this.head = next;
    if (next) next.deadlinePrev = prev;
    else this.tail = prev;
    e.deadlinePrev = e.deadlineNext = null;
    e.deadlineList = null;
    // the timer stays: when it fires early it finds nothing due and waits for the new head
  }

  /** Armed items (for tests and gauges): walks the list. */
  get size(): number {
    let n = 0;
    for (let e = this.head; e; e = e.deadlineNext) n++;
    return n;
  }

  private schedule(at: number, now: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - now));
    this.timer.unref();
  }

  private expire(): void {
    this.timer = null;
    const now = Date.now();
    try {
      for (let e = this.head; e && e.deadlineAt <= now; e = this.head) {
        this.disarm(e);
        e.onDeadline();
      }
    } finally {
      if (this.head && !this.timer) this.schedule(this.head.deadlineAt, now);
    }
  }
}
