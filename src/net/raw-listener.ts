// A listening socket on edgeward's own fd, accepted from in the thread's epoll set (accept4
// through koffi): no net.Server, no net.Socket per client. The SOCKS server and the interceptor
// take their clients from it; each accepted fd goes to `onAccept` in the plane's poll callback, so
// a connection's whole path to the relay can run there. It counts open clients against
// --max-connections (across the threads that share the socket) and waits out a shortage of file
// descriptors without losing the clients queued in the kernel.
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { thePlane, type FdHandler } from '../kernel/epoll-plane.js';
import { acceptFd, closeFd, EPOLLIN, localAddress } from '../kernel/fdio.js';
import { isMptcpSocket, openListenSocket } from '../kernel/sockopt.js';
import type { Logger } from '../log/logger.js';
import { SlotSet } from '../core/slot-set.js';
import { OpenCount } from './open-count.js';
import { RawClient } from './raw-client.js';

const { EAGAIN, EMFILE, ENFILE } = osConstants.errno;
/** backlog of the listening socket: bursts of connects wait in the kernel, not in SYN retries */
const BACKLOG = 1024;
/** connections taken from the accept queue per turn of the loop, before the others get theirs */
const ACCEPTS_PER_TURN = 64;
/** after EMFILE/ENFILE: when to take from the accept queue again */
const ACCEPT_RETRY_MS = 100;

export interface RawListenerOptions {
  /** what the log lines about accepting call this listener ("SOCKS", "intercept") */
  name: string;
  /** open clients beyond which new ones are closed at once */
  maxConnections: number;
  /** memory shared with the listeners of other threads on the same socket (slot 0): the limit holds for all */
  openCount?: Int32Array;
  /**
   * each accepted client, counted open: `track` it (counted until it closes or is adopted), or
   * close its fd and call `open.closed()`
   */
  onAccept: (fd: number, address: string, port: number) => void;
  /** each client closed at once because maxConnections were open */
  onDrop: () => void;
  logger: Logger;
}

export interface RawListenAt {
  /** an IP literal or a name (looked up) */
  host: string;
  port: number;
  /** IPPROTO_MPTCP: MPTCP clients get MPTCP, plain TCP clients still work (the kernel falls back) */
  mptcp?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: the socket TPROXY hands diverted connections to (CAP_NET_ADMIN) */
  transparent?: boolean;
  /** TCP_NODELAY on the listener: every accepted client has it, no setsockopt per connection */
  noDelay?: boolean;
  /** accept on this fd, made by another thread (a dup); host and port are then ignored */
  fd?: number;
}

export interface RawBound extends net.AddressInfo {
  /** the listening socket is IPPROTO_MPTCP, as the kernel says */
  mptcp: boolean;
  /** why MPTCP was asked for but the socket is plain TCP */
  mptcpUnavailable?: string;
}

export class RawListener {
  private listening: number | null = null;
  private readonly plane = thePlane();
  /** the listener's edge: accept at once */
  private readonly acceptor: FdHandler = { onEvent: () => this.acceptAll() };
  /** set while accept waits for a file descriptor to be free (EMFILE) */
  private acceptRetry: NodeJS.Timeout | null = null;
  /** accept ran out of file descriptors and said so (once, until it got one again) */
  private fdShortage = false;
  /** the open clients, against maxConnections */
  readonly open: OpenCount;
  /** accepted clients whose fds are still the server's (handshake, connecting) */
  private readonly clients = new SlotSet<RawClient>();

  constructor(private readonly opts: RawListenerOptions) {
    this.open = new OpenCount(opts.maxConnections, opts.openCount);
  }

  /** the listening socket's fd: other threads accept from dups of it */
  get fd(): number | null {
    return this.listening;
  }

  /** Opens (or takes) the listening socket and starts accepting; resolves with the bound address. */
  async listen(at: RawListenAt): Promise<RawBound> {
    let fd = at.fd;
    let mptcp: boolean;
    let mptcpUnavailable: string | undefined;
    if (fd === undefined) {
      const ip = net.isIP(at.host) ? at.host : (await lookup(at.host)).address;
      const opened = openListenSocket({ family: net.isIPv6(ip) ? 6 : 4, host: ip, port: at.port, backlog: BACKLOG, mptcp: at.mptcp === true, transparent: at.transparent === true, noDelay: at.noDelay === true });
      fd = opened.fd;
      mptcp = opened.mptcp;
      mptcpUnavailable = opened.mptcpUnavailable;
    } else {
      mptcp = isMptcpSocket(fd);
    }
    this.listening = fd;
    this.plane.watch(fd, this.acceptor, EPOLLIN);
    this.plane.soon(() => this.acceptAll()); // edge-triggered: whatever is already queued
    const bound = localAddress(fd) ?? { address: at.host, port: at.port };
    const r: RawBound = { address: bound.address, family: net.isIPv6(bound.address) ? 'IPv6' : 'IPv4', port: bound.port, mptcp };
    if (mptcpUnavailable !== undefined) r.mptcpUnavailable = mptcpUnavailable;
    return r;
  }

  /** Accepted clients still open: still the server's, or adopted and not yet closed. */
  get clientCount(): number {
    return this.clients.size + this.open.handedOn;
  }

  /** A client made of an accepted fd: counted open until it closes, or until adopt. */
  track(client: RawClient): void {
    this.clients.add(client);
    client.once('close', () => {
      if (this.clients.delete(client)) this.open.closed();
    });
  }

  /**
   * The client's fd leaves the server (to the relay, or to Node): still counted open until the
   * function returned is called (once, when that connection has closed).
   */
  adopt(client: RawClient): () => void {
    this.clients.delete(client);
    return this.open.handOn();
  }

  /** Closes every tracked client (the adopted ones are their new owner's to close). */
  destroyClients(): void {
    for (const c of this.clients.values()) c.destroy();
  }

  /** Stops accepting and closes the listening socket; accepted clients go on. */
  close(): void {
    if (this.acceptRetry) clearTimeout(this.acceptRetry);
    this.acceptRetry = null;
    if (this.listening !== null) {
      this.plane.unwatch(this.listening, this.acceptor);
      closeFd(this.listening);
      this.listening = null;
    }
  }

  /** Takes the connections waiting in the accept queue, a bounded number per turn. */
  private acceptAll(): void {
    const fd = this.listening;
    if (fd === null) return;
    const { opts } = this;
    for (let i = 0; i < ACCEPTS_PER_TURN; i++) {
      const a = acceptFd(fd);
      if (typeof a === 'number') {
        if (a === -EAGAIN) return;
        if (a === -EMFILE || a === -ENFILE) {
          // the queue is not drained, so no new edge comes for what waits in it: try again soon
          if (!this.acceptRetry) {
            if (!this.fdShortage) opts.logger.warn(`${opts.name} accept: no file descriptor left; the clients wait in the queue until one is free`, { error: a === -EMFILE ? 'EMFILE' : 'ENFILE', retryMs: ACCEPT_RETRY_MS });
            this.fdShortage = true;
            this.acceptRetry = setTimeout(() => {
              this.acceptRetry = null;
              this.acceptAll();
            }, ACCEPT_RETRY_MS);
          }
          return;
        }
        continue; // ECONNABORTED and the like: that client is gone, the next may be there
      }
      if (this.fdShortage) {
        this.fdShortage = false;
        opts.logger.info(`${opts.name} accept: file descriptors free again`);
      }
      if (!this.open.tryOpen()) {
        closeFd(a.fd);
        opts.onDrop();
        continue;
      }
      opts.onAccept(a.fd, a.address, a.port);
    }
    // more may be waiting: after the others had their turn
    this.plane.soon(() => this.acceptAll());
  }
}
