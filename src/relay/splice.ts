// The byte relay of every proxied TCP connection: the kernel moves the bytes, socket -> pipe ->
// socket with splice(2), and JavaScript only decides when. Both sockets of every relay sit in the
// thread's epoll set (kernel/epoll-plane.ts: edge-triggered, registered once, no epoll_ctl per
// turn), which Node's event loop watches: timers, DNS, the store and the messages between threads
// go on in the same loop as before.
//
// A direction starts by copying (read, then write from one buffer per thread): small exchanges,
// which most connections are, cost fewer and cheaper calls that way. Past its first 64 KiB it is a
// bulk direction, spliced from then on.
//
// Per direction there is at most one chunk in flight: read (into a pipe) only when the last chunk
// has been written out. A destination that cannot take more (EAGAIN) leaves the chunk in its pipe
// and the source unread, so backpressure reaches the sender through TCP's own window: memory per
// connection is bounded by one pipe per direction (1 MiB), and only while bytes are in flight. Idle
// connections hold no pipe (9 000 held connections would otherwise need 36 000 more fds); empty
// pipes go back to a per-thread pool. Without a pipe (the fd limit reached) a bulk direction falls
// back to read/write through the thread's buffer.
//
// Half-close: end of stream one way is passed on as a FIN (shutdown SHUT_WR) and the other way keeps
// flowing. A reset on one side resets the other (SO_LINGER 0), other errors close it. An idle timer
// per thread closes relays that moved nothing for their idle timeout.
import { constants as osConstants } from 'node:os';
import { FALLBACK_CHUNK, thePlane, type PlaneMember } from '../kernel/epoll-plane.js';
import { closeFd, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, readFd, resetAndClose, shutdownWrite, splice, writeFd } from '../kernel/fdio.js';
import { KernelError } from '../kernel/sockopt.js';

const { EAGAIN, ECONNRESET, EINTR } = osConstants.errno;

/**
 * bytes a direction copies before it splices: past them it is a bulk direction. Not "a read that
 * fills the buffer": a reader faster than its sender mostly reads less than that, and a stream
 * copied all along ran at half its spliced throughput (bench/README.md)
 */
const SPLICE_AFTER = 64 * 1024;

/** chunks one direction moves per turn before the other relays get theirs */
const ROUNDS = 16;

export type RelayEnd = 'closed' | 'idle' | 'error';

/** What the registry and the API need of a running relay. */
export interface RelayHandle {
  readonly clientFd: number;
  readonly outFd: number;
  /** bytes read from the client (up) and from the destination (down), relayed or on their way */
  readonly bytes: { up: number; down: number };
  /** true until both sockets are closed */
  readonly open: boolean;
  /** Closes both sockets now. */
  destroy(): void;
}

export interface SpliceRelayOptions {
  /** ms without a byte either way before both sockets are closed; 0 = never */
  idleTimeout: number;
  /** bytes for the destination before anything else (the client's, sent before its handshake ended): counted as up */
  toRemote?: Buffer;
  /** protocol bytes for the client first (a SOCKS reply): not counted */
  reply?: Buffer;
  /** the destination's bytes for the client, read before relaying began (after an upstream's reply): counted as down */
  toClient?: Buffer;
  /** which of the two sockets are in the thread's epoll set already (kernel/epoll-plane.ts `park`) */
  parked?: { client?: boolean; out?: boolean };
}

/** One way of a relay: from `src` to `dst`. */
class Direction {
  pipeR = -1;
  pipeW = -1;
  pipeCap = 0;
  /** bytes in the pipe, not yet written to dst */
  queued = 0;
  /** bytes in user space to write to dst before anything is read (handshake leftovers, fallback reads) */
  held: Buffer | null = null;
  /** edge-triggered: src may have more (no EAGAIN since its last edge) */
  readable = true;
  /** edge-triggered: dst may take more */
  writable = true;
  /** src ended and the FIN was passed on */
  eof = false;
  /**
   * src's FIN (or an error) may be waiting: read on to it even after a short read. Set by an edge
   * that flags it, and at the start: the edges of a socket handed over (parked) went to no one, so
   * until a read sees EAGAIN nothing says the FIN is not there
   */
  hangup = true;
  /**
   * bulk: SPLICE_AFTER bytes have been copied, so from then on chunks go socket -> pipe -> socket.
   * Until then they are copied (read, then write at once from the thread's buffer): for the small
   * exchanges most connections are made of, two plain calls cost less than two splices, and a
   * short read says the socket is drained (no call to see EAGAIN), which a splice cannot say
   */
  splicing = false;
  bytes = 0;

  constructor(
    readonly src: number,
    readonly dst: number,
  ) {}
}

export class SpliceRelay implements RelayHandle, PlaneMember {
  private readonly up: Direction;
  private readonly down: Direction;
  private readonly plane = thePlane();
  private closed = false;
  readonly idleTimeout: number;
  lastActive: number;
  /** its place in the thread's relays (kernel/epoll-plane.ts) */
  slot = -1;

  /**
   * Relays between two connected, non-blocking sockets this relay now owns (it closes them), from
   * start() on; `done` runs once, when both are closed, with how it ended.
   */
  constructor(
    readonly clientFd: number,
    readonly outFd: number,
    opts: SpliceRelayOptions,
    private readonly done: (how: RelayEnd, err?: Error) => void,
  ) {
    this.idleTimeout = opts.idleTimeout;
    this.up = new Direction(clientFd, outFd);
    this.down = new Direction(outFd, clientFd);
    if (opts.toRemote && opts.toRemote.length > 0) {
      this.up.held = opts.toRemote;
      this.up.bytes = opts.toRemote.length;
    }
    const early = opts.toClient?.length ?? 0;
    const first = opts.reply && early > 0 ? Buffer.concat([opts.reply, opts.toClient!]) : (opts.reply ?? opts.toClient);
    if (first && first.length > 0) this.down.held = first;
    this.down.bytes = early;
    this.lastActive = this.plane.now = Date.now();
    try {
      this.plane.add(this, opts.parked);
      // a parked socket's edges came once, to its last owner or no one: what they said, it says now
      if (opts.parked?.client) this.known(this.up, this.plane.takeMissed(clientFd));
      if (opts.parked?.out) this.known(this.down, this.plane.takeMissed(outFd));
    } catch (e) {
      this.closed = true;
      this.plane.remove(this);
      closeFd(clientFd);
      closeFd(outFd);
      queueMicrotask(() => done('error', e as Error));
    }
  }

  /** What the edges of a parked socket said while no one watched: whether there may be bytes to read, and whether its FIN may be there. */
  private known(d: Direction, events: number): void {
    d.readable = (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0;
    d.hangup = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0;
  }

  /** Starts moving bytes (after the caller has kept the relay where `done` can find it: done may run at once). */
  start(): void {
    this.pump();
  }

  get bytes(): { up: number; down: number } {
    return { up: this.up.bytes, down: this.down.bytes };
  }

  get open(): boolean {
    return !this.closed;
  }

  destroy(): void {
    this.end('closed');
  }

  onEvent(fd: number, ev: number): void {
    if (this.closed) return;
    const fromClient = fd === this.clientFd;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      const d = fromClient ? this.up : this.down;
      d.readable = true;
      if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) d.hangup = true;
    }
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) (fromClient ? this.down : this.up).writable = true;
    this.pump();
  }

  /** Moves what can be moved both ways; ends the relay when both ways are done. */
  pump(): void {
    if (this.closed) return;
    const more = this.move(this.up);
    if (this.closed) return;
    const moreDown = this.move(this.down);
    if (this.closed) return;
    if (this.up.eof && this.down.eof && this.up.queued === 0 && this.down.queued === 0) this.end('closed');
    else if (more || moreDown) this.plane.later(this);
  }

  /** One direction's turn: true when it stopped only because its rounds ran out. */
  private move(d: Direction): boolean {
    for (let round = 0; round < ROUNDS; round++) {
      // what is on its way goes first
      if (d.held) {
        if (!d.writable) return false;
        const n = writeFd(d.dst, d.held);
        if (n < 0) {
          if (n === -EAGAIN) d.writable = false;
          else this.fail(d.dst, -n, 'write');
          return false;
        }
        this.lastActive = this.plane.now;
        if (n < d.held.length) {
          d.held = d.held.subarray(n);
          d.writable = false;
          return false;
        }
        d.held = null;
      }
      if (d.queued > 0) {
        if (!d.writable) return false;
        const n = splice(d.pipeR, d.dst, d.queued);
        if (n < 0) {
          if (n === -EAGAIN) d.writable = false;
          else this.fail(d.dst, -n, 'splice');
          return false;
        }
        this.lastActive = this.plane.now;
        d.queued -= n;
        if (d.queued > 0) continue;
      }
      if (d.pipeR >= 0) this.releasePipe(d);
      if (d.eof || !d.readable) return false;
      // small chunks, and bulk ones without a pipe (none to be had: the fd limit), are copied
      const p = d.splicing ? this.plane.takePipe() : null;
      if (!p) {
        if (!this.copy(d)) return false;
        continue;
      }
      [d.pipeR, d.pipeW, d.pipeCap] = p;
      const n = splice(d.src, d.pipeW, d.pipeCap);
      if (n === 0) {
        this.ended(d);
        return false;
      }
      if (n < 0) {
        if (n === -EAGAIN) d.readable = false;
        else if (n !== -EINTR) this.fail(d.src, -n, 'splice');
        if (d.pipeR >= 0) this.releasePipe(d); // empty (the read failed); fail() may have closed it all already
        return false;
      }
      this.lastActive = this.plane.now;
      d.bytes += n;
      d.queued = n;
    }
    return true;
  }

  /**
   * One chunk copied: read into the thread's buffer and written on at once; what dst does not take
   * is kept (held). True when the next chunk may follow now; false when src has nothing more for
   * now, dst takes no more, or the direction ended or failed.
   */
  private copy(d: Direction): boolean {
    const buf = this.plane.fallback;
    const n = readFd(d.src, buf, FALLBACK_CHUNK);
    if (n === 0) {
      this.ended(d);
      return false;
    }
    if (n < 0) {
      if (n === -EAGAIN) d.readable = d.hangup = false;
      else if (n !== -EINTR) this.fail(d.src, -n, 'read');
      return n === -EINTR;
    }
    this.lastActive = this.plane.now;
    d.bytes += n;
    const w = d.writable ? writeFd(d.dst, buf, n) : -EAGAIN;
    if (w < 0 && w !== -EAGAIN) {
      this.fail(d.dst, -w, 'write');
      return false;
    }
    const taken = Math.max(w, 0);
    if (taken < n) {
      d.held = Buffer.from(buf.subarray(taken, n));
      d.writable = false;
    }
    if (d.bytes >= SPLICE_AFTER) {
      d.splicing = true;
      return taken === n;
    }
    // a stream socket's read returns less than asked only when its receive queue is empty: the
    // next bytes bring the next edge. Unless the FIN is flagged already: then read on to it
    if (!d.hangup) d.readable = false;
    return taken === n && d.readable;
  }

  /** src ended: the FIN goes on to dst, unless the other way is over too (then closing both sends it). */
  private ended(d: Direction): void {
    d.eof = true;
    d.readable = false;
    if (d.pipeR >= 0) this.releasePipe(d);
    const other = d === this.up ? this.down : this.up;
    if (!(other.eof && other.queued === 0 && !other.held)) shutdownWrite(d.dst);
  }

  private releasePipe(d: Direction): void {
    this.plane.givePipe([d.pipeR, d.pipeW, d.pipeCap]);
    d.pipeR = d.pipeW = -1;
  }

  /** A call on `fd` failed with errno `e`: a reset is passed on as a reset, any other error closes the other side. */
  private fail(fd: number, e: number, call: string): void {
    const other = fd === this.clientFd ? this.outFd : this.clientFd;
    this.end('error', new KernelError(call, e), e === ECONNRESET ? other : -1);
  }

  /** Closes both sockets (`resetFd` with a reset) and the pipes still holding bytes; `done` runs. */
  end(how: RelayEnd, err?: Error, resetFd = -1): void {
    if (this.closed) return;
    this.closed = true;
    this.plane.remove(this);
    for (const d of [this.up, this.down]) {
      if (d.pipeR < 0) continue;
      // a pipe with bytes in it is not reused
      if (d.queued === 0) this.plane.givePipe([d.pipeR, d.pipeW, d.pipeCap]);
      else {
        closeFd(d.pipeR);
        closeFd(d.pipeW);
      }
      d.pipeR = d.pipeW = -1;
    }
    for (const fd of [this.clientFd, this.outFd]) {
      if (fd === resetFd) resetAndClose(fd);
      else closeFd(fd);
    }
    this.done(how, err);
  }
}
