// A connection on edgeward's own fd (events from the thread's epoll set) for the part of its life
// before the relay: an accepted client (accept4 through koffi), or the connection to an upstream
// SOCKS proxy during our handshake with it (transport/upstream.ts): a handshake read message by
// message (`take`, synchronous: the handshake steps on when `onReadable` runs), small replies written, then the
// fd handed to the relay (`release`) or to Node (`toNetSocket`, for the rare commands that need a
// net.Socket). It costs no net.Socket, no stream and no libuv handle per connection.
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { SOCKET_EVENTS, thePlane, type FdHandler } from '../kernel/epoll-plane.js';
import { closeFd, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, localAddress, readFd, resetAndClose, shutdownWrite, writeFd } from '../kernel/fdio.js';
import { MAX_BUFFERED, takeMessage, type Parsed, type ParseError, type ReadResult } from './frame-reader.js';

const { EAGAIN, EINTR } = osConstants.errno;

/** After end(): how long the socket waits for the client's FIN before it is closed anyway. */
const LINGER_MS = 5000;

const readBuf = Buffer.allocUnsafe(MAX_BUFFERED + 1);
/** the client whose unparsed bytes lie in readBuf (borrowed), if any: they are copied out before readBuf is read into again */
let lender: RawClient | null = null;
const EMPTY = Buffer.alloc(0);

export class RawClient implements FdHandler {
  /** what runs at 'close' (once each): no EventEmitter per connection, the only event is this one */
  private closeListeners: (() => void)[] | null = null;
  private readonly plane = thePlane();
  private buf: Buffer = EMPTY;
  /** its place in its listener's clients (net/raw-listener.ts) */
  slot = -1;
  /**
   * runs when bytes or the end of stream arrived, in the plane's poll callback: the handshake takes
   * its next step (anything it starts that settles promises must make Node's loop turn: plane.soon)
   */
  onReadable: (() => void) | null = null;
  /** the client sent its FIN */
  ended = false;
  /**
   * the fd is no longer this object's: closed (destroy), or handed on (release, toNetSocket; no
   * 'close' then). Either way nothing here touches it again, and a connect made for it is abandoned
   */
  destroyed = false;
  /** bytes of a reply the kernel did not take at once */
  private unsent: Buffer | null = null;
  /** end() was called: FIN sent once the reply is out; closed at the client's FIN or after LINGER_MS */
  private ending = false;
  private lingerTimer: NodeJS.Timeout | null = null;
  private watching = true;
  /** edge-triggered: the kernel may hold more than we read (we stopped at MAX_BUFFERED) */
  private readable = true;
  /** the kernel said the client's FIN (or an error) is there: read on to it, short reads or not */
  private hangup = false;
  private local: { address: string; port: number } | null = null;
  /** reset() was called: the close sends a reset */
  private resetOnClose = false;

  /**
   * `parked`: the fd is in the thread's epoll set already (a connection dialNow made): it is
   * claimed as it is, and what arrived meanwhile is read at once
   */
  constructor(
    readonly fd: number,
    readonly remoteAddress: string,
    readonly remotePort: number,
    parked = false,
  ) {
    if (!parked) this.plane.watch(fd, this, SOCKET_EVENTS);
    else {
      const missed = this.plane.claim(fd, this);
      if (missed & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.onEvent(fd, missed);
    }
  }

  get localAddress(): string {
    this.local ??= localAddress(this.fd);
    return this.local?.address ?? '';
  }

  get localPort(): number {
    this.local ??= localAddress(this.fd);
    return this.local?.port ?? 0;
  }

  onEvent(_fd: number, ev: number): void {
    if (this.destroyed) return;
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP) && this.unsent) this.flush();
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.hangup = true;
      this.readable = true;
      this.readMore();
    }
  }

  /**
   * Reads what the kernel has, up to MAX_BUFFERED waiting; steps the handshake on (onReadable, at
   * once: the connect it may start settles no promise on its way). A TCP read that returns less than asked has emptied the receive queue, so no second
   * read to see EAGAIN: the next bytes bring the next edge. Unless the FIN is there already (its
   * edge came with this one): then on to the end of stream.
   */
  private readMore(): void {
    let got = false;
    if (lender) lender.unborrow(); // a read nested in another client's handshake step
    while (this.readable && !this.ended && !this.destroyed && this.buf.length <= MAX_BUFFERED) {
      const want = MAX_BUFFERED + 1 - this.buf.length;
      const n = readFd(this.fd, readBuf, want);
      if (n === -EINTR) continue;
      if (n === -EAGAIN) {
        this.readable = false;
        break;
      }
      if (n < 0) {
        // a reset: the connection is gone
        this.plane.soon(() => this.destroy());
        return;
      }
      got = true;
      if (n === 0) {
        this.ended = true;
        if (this.ending) {
          this.plane.soon(() => this.destroy());
          return;
        }
        break;
      }
      const last = n < want && !this.hangup;
      if (this.buf.length === 0 && last) {
        // the usual case, a whole message in one read: parsed where it lies in the thread's
        // buffer (below: what the handshake leaves of it is copied out before the next read)
        this.buf = readBuf.subarray(0, n);
        lender = this;
      } else this.buf = this.buf.length === 0 ? Buffer.from(readBuf.subarray(0, n)) : Buffer.concat([this.buf, readBuf.subarray(0, n)]);
      if (last) this.readable = false;
    }
    if (got && this.onReadable) this.onReadable();
    if (lender === this) this.unborrow();
  }

  /** The bytes left in the thread's read buffer (this client is the `lender`) become this client's own. */
  private unborrow(): void {
    lender = null;
    if (this.buf.length > 0) this.buf = Buffer.from(this.buf);
  }

  /**
   * The next message, if `parse` can decode a whole one from the bytes received: its value (taken
   * from the buffer) or its parse error; 'more' until more bytes come (onReadable says when);
   * 'closed' when the client ended or the connection is gone before a whole message.
   */
  take<T, E extends ParseError = ParseError>(parse: (b: Buffer) => Parsed<T, E>): ReadResult<T, E> | 'more' {
    const t = takeMessage(this.buf, parse, this.ended || this.destroyed);
    if (t === 'more') return 'more';
    this.buf = t.rest;
    return t.result;
  }

  /** The bytes received beyond the handshake (they belong to the destination). */
  detach(): Buffer {
    if (lender === this) this.unborrow();
    const b = this.buf;
    this.buf = EMPTY;
    return b;
  }

  write(data: Buffer): void {
    if (this.destroyed || this.ending) return;
    if (this.unsent) {
      this.unsent = Buffer.concat([this.unsent, data]);
      return;
    }
    const n = writeFd(this.fd, data);
    if (n === data.length) return;
    if (n < 0 && n !== -EAGAIN) {
      this.destroy();
      return;
    }
    this.unsent = data.subarray(Math.max(n, 0));
  }

  private flush(): void {
    const data = this.unsent!;
    const n = writeFd(this.fd, data);
    if (n < 0 && n !== -EAGAIN) {
      this.destroy();
      return;
    }
    this.unsent = n === data.length ? null : data.subarray(Math.max(n, 0));
    if (!this.unsent && this.ending) this.finishEnd();
  }

  /** Sends `data`, then FIN; the socket closes when the client's FIN arrives (or after LINGER_MS), as net.Socket.end does. */
  end(data?: Buffer): void {
    if (this.destroyed || this.ending) return;
    if (data) this.write(data);
    this.ending = true;
    if (!this.unsent) this.finishEnd();
  }

  private finishEnd(): void {
    shutdownWrite(this.fd);
    if (this.ended) {
      this.destroy();
      return;
    }
    this.lingerTimer = setTimeout(() => this.destroy(), LINGER_MS).unref();
  }

  /** Runs `listener` once, when the connection closes (destroy; not when the fd is handed on). */
  once(_event: 'close', listener: () => void): this {
    (this.closeListeners ??= []).push(listener);
    return this;
  }

  removeListener(_event: 'close', listener: () => void): this {
    const list = this.closeListeners;
    const at = list ? list.indexOf(listener) : -1;
    if (at >= 0) list!.splice(at, 1);
    return this;
  }

  /** Closes the connection with a reset (SO_LINGER 0): what a refused connect tells a client that knows of no gateway. */
  reset(): void {
    if (this.destroyed) return;
    this.resetOnClose = true;
    this.destroy();
  }

  /** Closes the connection now; 'close' is emitted. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.stopWatching(); // parked: the close takes it out of the epoll set
    if (this.resetOnClose) resetAndClose(this.fd);
    else closeFd(this.fd);
    this.onReadable = null;
    const listeners = this.closeListeners;
    this.closeListeners = null;
    if (listeners) for (const l of listeners) l();
  }

  /**
   * Its events stop coming here; the fd stays in the thread's epoll set (parked) for its next
   * owner, or its close, which learns whether there may be more to read and whether the FIN may be there.
   */
  private stopWatching(): void {
    if (!this.watching) return;
    this.watching = false;
    this.plane.park(this.fd, this, (this.readable ? EPOLLIN : 0) | (this.hangup || this.ended ? EPOLLRDHUP : 0));
  }

  /**
   * Hands the fd on (to the relay): the bytes received beyond the handshake come with it, and it is
   * parked in the thread's epoll set (the relay takes it as it is). Null when the connection is
   * already closed or a reply is still on its way.
   */
  release(): { fd: number; buffered: Buffer; parked: true } | null {
    if (this.destroyed || this.unsent || this.ending) return null;
    this.stopWatching();
    this.destroyed = true;
    this.onReadable = null;
    return { fd: this.fd, buffered: this.detach(), parked: true };
  }

  /** Hands the fd to Node (BIND, UDP ASSOCIATE): a net.Socket over it, and the bytes received beyond the handshake. */
  toNetSocket(): { socket: net.Socket; buffered: Buffer } | null {
    const r = this.release();
    if (!r) return null;
    this.plane.unpark(r.fd);
    const socket = new net.Socket({ fd: r.fd, readable: true, writable: true, allowHalfOpen: true });
    return { socket, buffered: r.buffered };
  }
}
