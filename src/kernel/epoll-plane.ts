// The thread's epoll set for edgeward's own sockets (relay/splice.ts): one per thread, holding
// both sockets of every relay, edge-triggered and registered once. Node's event loop watches the
// one epoll fd through a libuv poll handle (koffi's), and each time it is readable the ready events
// are taken in batches with one epoll_wait each, so timers, DNS, the store and the thread messages
// go on in the same loop. It also waits for non-blocking connects (whenWritable), keeps the pool of
// splice pipes, and sweeps idle members.
import koffi from 'koffi';
import { SlotSet, type Slotted } from '../core/slot-set.js';
import { constants as osConstants } from 'node:os';
import { closeFd, EPOLL_DATA_AT, EPOLL_EVENT_SIZE, epollAdd, epollCreate, epollDel, EPOLLET, EPOLLIN, EPOLLOUT, EPOLLRDHUP, epollWait, epollWaitNs, openPipe, yieldCpu } from './fdio.js';

const { EINTR } = osConstants.errno;

/**
 * The capacity relay pipes are asked for, and so the bytes per splice into one: 1 MiB (fs.pipe-max-size's
 * default) took single-stream throughput from 13.4 to 17.4 Gbit/s and CPU per GB from 0.44 to 0.23 s
 * against the default 64 KiB (bench/README.md). The pages are the socket's own (splice moves
 * references), held only while a chunk is in flight.
 */
const PIPE_SIZE = 1 << 20;
/** bytes per read for a direction without a pipe */
export const FALLBACK_CHUNK = 65536;
/** events taken per epoll_wait */
const MAX_EVENTS = 256;
/**
 * empty pipes kept per thread for the next chunk in flight; more are closed. Few: a user without
 * CAP_SYS_RESOURCE has fs.pipe-user-pages-soft (64 MiB of pipe capacity) in all, beyond which new
 * pipes get 2 pages (the relay still works, with more system calls)
 */
const SPARE_PIPES = 16;

/**
 * The events every socket of a connection is registered with (edge-triggered), from its accept or
 * connect until it closes: the handshake, the connect and the relay all take them, so handing the
 * socket from one to the next costs no epoll_ctl (see `park`).
 */
export const SOCKET_EVENTS = (EPOLLIN | EPOLLOUT | EPOLLRDHUP) >>> 0;

/** Something that wants the events of an fd in the plane. */
export interface FdHandler {
  onEvent(fd: number, events: number): void;
}

/** Who waits for a connect in progress to finish (whenWritable). */
export interface Waiter {
  onWritable(events: number): void;
}

/** What the plane holds: a relay, its two sockets and how to move its bytes. */
export interface PlaneMember extends FdHandler, Slotted {
  readonly clientFd: number;
  readonly outFd: number;
  /** ms without a byte either way before the sweep ends it; 0 = never */
  readonly idleTimeout: number;
  lastActive: number;
  /** moves what it can (called again after it ran out of its rounds) */
  pump(): void;
  end(how: 'idle'): void;
}

/** koffi's libuv poll handle (koffi.node.poll). */
interface PollHandle {
  close(): void;
  ref(): void;
  unref(): void;
}

const NOTHING = (): void => undefined;
/**
 * After a batch, the poll callback waits this long in epoll_wait for the next events before it
 * returns to Node's loop: a proxied connection's next step (the client's request after the method
 * reply, the connect's completion, the first bytes) usually comes within a round trip, and taking
 * it here costs one system call where a return to Node's loop costs libuv's epoll_pwait, the poll
 * callback and an epoll_wait (~30 us more per wake-up on the bench machine: bench/README.md).
 * The thread sleeps meanwhile (no CPU), and other work on Node's loop waits at most this long.
 */
const LINGER_NS = 300_000;
/** ...and stays at most this long (ms) in one callback while events keep coming: Node's loop (timers, messages, the API) gets its turn */
const SLICE_MS = 2;

/** the default of --busy-poll, in microseconds */
export const DEFAULT_BUSY_POLL_US = 50;
/**
 * How long (ms) the linger first polls without sleeping (epoll_wait with a zero timeout, then
 * sched_yield, again and again) before it sleeps in epoll_pwait2. A thread that sleeps is woken by
 * the kernel when its next event comes, and a CPU that went idle meanwhile takes its time to come
 * back (an IPI, and under a hypervisor an exit and re-entry of the virtual CPU): 30-50 us per step
 * of a proxied connection on the bench machine, each step waiting for it once. The yield lets a
 * thread waiting for this CPU run first (on a small machine often the very client or server whose
 * bytes the poll waits for; a thread queued on another CPU it does not help). Polling runs only
 * after activity, at most this long per batch of events. Per thread, set by setBusyPoll.
 */
let busyPollMs = DEFAULT_BUSY_POLL_US / 1000;

/** Sets this thread's busy poll (--busy-poll): microseconds, 0 = sleep at once. */
export function setBusyPoll(us: number): void {
  busyPollMs = us / 1000;
}

/** The thread's epoll set and everything relayed through it. */
export class Plane {
  readonly epfd = epollCreate();
  private readonly events = Buffer.alloc(MAX_EVENTS * EPOLL_EVENT_SIZE);
  private readonly poll: PollHandle;
  /** relay by fd (either of its two) */
  private readonly byFd: (FdHandler | undefined)[] = [];
  /** fds watched for other handlers (listening sockets, clients in their handshake) */
  private watched = 0;
  /** watched fds that do not keep the loop alive */
  private readonly quiet = new Set<number>();
  private readonly spare: [number, number, number][] = [];
  /** relays that hit their rounds and have more to move */
  private readonly again = new Set<PlaneMember>();
  private againScheduled = false;
  readonly relays = new SlotSet<PlaneMember>();
  /** fds waiting to be writable (a connect in progress), with who waits */
  private readonly waiters: (Waiter | undefined)[] = [];
  /** how many fds have a waiter (an array by fd, not a Map: no hash table growing and shrinking with each connect) */
  private waiting = 0;
  /**
   * by fd, for parked fds: the events their next owner must know of (edge-triggered, they come
   * once): what the last owner left (park), and what came while no one had them
   */
  private readonly missed: number[] = [];
  /**
   * callbacks for the next setImmediate (soon), in [0, wokenCount); two arrays that take turns and
   * are emptied in place, never cut off and regrown (see core/slot-set.ts: a discarded backing
   * store in the old generation would keep the connections its callbacks hold alive)
   */
  private woken: ((() => void) | undefined)[] = [];
  private wokenCount = 0;
  private running: ((() => void) | undefined)[] = [];
  private refd = false;
  private sweep: NodeJS.Timeout | null = null;
  /** Date.now() at the start of the current batch: one clock read per batch, not per event */
  now = Date.now();
  /** a read/write buffer for directions without a pipe */
  readonly fallback = Buffer.allocUnsafe(FALLBACK_CHUNK);

  constructor() {
    this.poll = (koffi as unknown as { node: { poll(fd: number, opts: object, cb: () => void): PollHandle } }).node.poll(this.epfd, { readable: true }, () => this.onReady());
    this.poll.unref();
  }

  /**
   * Takes a relay in. Its sockets that are `parked` (in the set already, with SOCKET_EVENTS: a
   * handshake's client, a dialed connection) just get their events sent to it; the others are added.
   */
  add(r: PlaneMember, parked: { client?: boolean; out?: boolean } = {}): void {
    const ev = (SOCKET_EVENTS | EPOLLET) >>> 0;
    if (!parked.client) epollAdd(this.epfd, r.clientFd, ev);
    if (!parked.out) epollAdd(this.epfd, r.outFd, ev);
    this.byFd[r.clientFd] = r;
    this.byFd[r.outFd] = r;
    this.relays.add(r);
    this.refresh();
    if (r.idleTimeout > 0 && !this.sweep) this.sweep = setInterval(() => this.sweepIdle(), 1000).unref();
  }

  /** Forgets a relay whose fds are about to close (closing removes them from the epoll set). */
  remove(r: PlaneMember): void {
    if (this.byFd[r.clientFd] === r) this.byFd[r.clientFd] = undefined;
    if (this.byFd[r.outFd] === r) this.byFd[r.outFd] = undefined;
    this.again.delete(r);
    this.relays.delete(r);
    if (this.relays.size === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
    this.refresh();
  }

  /** The poll keeps the thread's loop alive while anything is relayed or connecting. */
  private refresh(): void {
    const busy = this.relays.size + this.waiting + this.watched > 0;
    if (busy === this.refd) return;
    this.refd = busy;
    if (busy) this.poll.ref();
    else this.poll.unref();
  }

  /**
   * Adds `fd` with `events` (EPOLLET added); its events go to `h` until unwatch. It keeps the
   * thread's loop alive unless `keepsAlive` is false (a netlink socket that only listens).
   */
  watch(fd: number, h: FdHandler, events: number, o: { keepsAlive?: boolean } = {}): void {
    epollAdd(this.epfd, fd, (events | EPOLLET) >>> 0);
    this.byFd[fd] = h;
    if (o.keepsAlive === false) this.quiet.add(fd);
    else this.watched++;
    this.refresh();
  }

  /** Removes a watched fd from the set (before it goes to Node, or a listener closes). */
  unwatch(fd: number, h: FdHandler): void {
    if (this.byFd[fd] !== h) return;
    this.byFd[fd] = undefined;
    epollDel(this.epfd, fd);
    if (!this.quiet.delete(fd)) this.watched--;
    this.refresh();
  }

  /**
   * Stops sending a watched fd's events to `h` and leaves it in the set, registered as it is (no
   * system call): for an fd that is about to be closed (closing takes it out of the set, as no
   * other fd shares its socket), or handed to a relay that is told it is parked (`add`).
   */
  park(fd: number, h: FdHandler, left: number = EPOLLIN | EPOLLRDHUP): void {
    if (this.byFd[fd] !== h) return;
    this.byFd[fd] = undefined;
    this.missed[fd] = left;
    this.watched--;
    this.refresh();
  }

  /**
   * Takes a parked fd (a dialed connection) for `h`, as watch would, without a system call: its
   * events go to `h` from now on. Returns the events it missed meanwhile, which `h` must act on.
   */
  claim(fd: number, h: FdHandler): number {
    this.byFd[fd] = h;
    this.watched++;
    this.refresh();
    return this.takeMissed(fd);
  }

  /**
   * What a parked fd's next owner must know, and forgets it: the events `park` was told the last
   * owner left unhandled (EPOLLIN: it may have more to read, EPOLLRDHUP: its FIN may be there),
   * with those that came since.
   */
  takeMissed(fd: number): number {
    const m = this.missed[fd] ?? ((EPOLLIN | EPOLLRDHUP) >>> 0);
    this.missed[fd] = 0;
    return m;
  }

  /** Takes a parked fd out of the set: before it goes to Node (a net.Socket over it, or a dup). */
  unpark(fd: number): void {
    epollDel(this.epfd, fd);
  }

  /**
   * Runs `cb` in setImmediate, batched with the others: what a poll event starts that settles
   * promises runs there (the poll callback itself is outside Node's callback scope).
   */
  soon(cb: () => void): void {
    this.woken[this.wokenCount++] = cb;
    if (this.wokenCount === 1) setImmediate(() => this.runWoken());
  }

  /**
   * A promise was settled outside Node's callback scope (in the poll callback): its continuations
   * run only when a callback of Node's loop ends, so make the loop turn (an empty setImmediate).
   */
  turn(): void {
    this.soon(NOTHING);
  }

  /**
   * Adds `fd` (a socket whose connect is in progress) with SOCKET_EVENTS; `w.onWritable` runs with
   * the events of its first edge (the connect finished, either way: EPOLLOUT alone is success), in
   * the poll callback: a waiter that settles a promise calls turn(). `stopWaiting` forgets it.
   * Either way the fd stays in the set, parked: it is closed, handed to a relay as parked, or
   * unparked for Node.
   */
  whenWritable(fd: number, w: Waiter): void {
    epollAdd(this.epfd, fd, (SOCKET_EVENTS | EPOLLET) >>> 0);
    this.missed[fd] = 0;
    if (!this.waiters[fd]) this.waiting++;
    this.waiters[fd] = w;
    this.refresh();
  }

  /** Forgets the waiter of `fd` (its connect was given up, or it ran). */
  stopWaiting(fd: number, w: Waiter): void {
    if (this.waiters[fd] !== w) return;
    this.waiters[fd] = undefined;
    this.waiting--;
    this.refresh();
  }

  takePipe(): [number, number, number] | null {
    return this.spare.pop() ?? openPipe(PIPE_SIZE);
  }

  givePipe(p: [number, number, number]): void {
    if (this.spare.length < SPARE_PIPES) this.spare.push(p);
    else {
      closeFd(p[0]);
      closeFd(p[1]);
    }
  }

  later(r: PlaneMember): void {
    this.again.add(r);
    if (!this.againScheduled) {
      this.againScheduled = true;
      setImmediate(() => this.runAgain());
    }
  }

  private runAgain(): void {
    this.againScheduled = false;
    this.now = Date.now();
    const batch = [...this.again];
    this.again.clear();
    for (const r of batch) r.pump();
  }

  /**
   * The epoll fd is readable: take the ready events, a batch at a time, until none is left and
   * none came within LINGER_NS, or SLICE_MS is over, or something waits for Node's loop.
   */
  private onReady(): void {
    const start = Date.now();
    this.now = start;
    const ev = this.events;
    let timeout = 0;
    for (;;) {
      const n = timeout === 0 ? epollWait(this.epfd, ev, MAX_EVENTS, 0) : this.linger(timeout);
      if (n === -EINTR) continue;
      if (n <= 0) break;
      for (let i = 0; i < n; i++) {
        const at = i * EPOLL_EVENT_SIZE;
        const fd = ev.readUInt32LE(at + EPOLL_DATA_AT);
        const r = this.byFd[fd];
        const events = ev.readUInt32LE(at);
        if (r) r.onEvent(fd, events);
        else {
          this.missed[fd] = (this.missed[fd] ?? 0) | events;
          this.wake(fd, events);
        }
      }
      if (n < MAX_EVENTS) {
        // work queued for Node's loop (promises, relays that ran out of rounds) goes first
        if (this.wokenCount > 0 || this.againScheduled) break;
        this.now = Date.now();
        if (this.now - start >= SLICE_MS) break;
        timeout = LINGER_NS;
      }
    }
  }

  /** Waits for the next events: polls for busyPollMs, then sleeps for at most `timeoutNs`. */
  private linger(timeoutNs: number): number {
    const ev = this.events;
    if (busyPollMs > 0) {
      const until = performance.now() + busyPollMs;
      do {
        const n = epollWait(this.epfd, ev, MAX_EVENTS, 0);
        if (n !== 0) return n;
        yieldCpu(); // a thread waiting for this CPU (the client, the server) goes first
      } while (performance.now() < until);
    }
    return epollWaitNs(this.epfd, ev, MAX_EVENTS, timeoutNs);
  }

  /**
   * An event of an fd no handler has: a connect that finished (its callback runs here), or a
   * parked fd (nothing to do: its next owner reads what is there).
   */
  private wake(fd: number, events: number): void {
    const w = this.waiters[fd];
    if (!w) return;
    this.waiters[fd] = undefined;
    this.waiting--;
    this.refresh();
    w.onWritable(events);
  }

  private runWoken(): void {
    const batch = this.woken;
    const n = this.wokenCount;
    this.woken = this.running; // what the callbacks queue goes to the other array, for the next turn
    this.running = batch;
    this.wokenCount = 0;
    this.refresh();
    for (let i = 0; i < n; i++) {
      const cb = batch[i]!;
      batch[i] = undefined;
      cb();
    }
  }

  private sweepIdle(): void {
    const now = Date.now();
    for (const r of this.relays.values()) if (r.idleTimeout > 0 && now - r.lastActive >= r.idleTimeout) r.end('idle');
  }
}

let plane: Plane | null = null;

/** This thread's plane (made on first use). */
export function thePlane(): Plane {
  plane ??= new Plane();
  return plane;
}
