// Opens the outgoing connection with a transport policy applied, re-applies a changed policy to an
// open socket, and reads back what the kernel really has in effect.
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { connectFd, EPOLLERR, EPOLLHUP, EPOLLOUT, localAddress, socketError, subflowCounters } from '../kernel/fdio.js';
import { withMptcpSysctls } from '../kernel/capabilities.js';
import { c_bind } from '../kernel/libc.js';
import { DeadlineItem, DeadlineList } from '../core/deadline-list.js';
import { thePlane } from '../kernel/epoll-plane.js';
import {
  closeFd,
  getCongestion,
  getKeepAlive,
  getMptcpInfo,
  getNoDelay,
  isMptcpSocket,
  KernelError,
  openStreamSocket,
  type OpenedSocket,
  setCongestion,
  setKeepAlive,
  setNoDelay,
  errnoName,
  setTransparent,
  sockaddr,
  sockaddrNow,
} from '../kernel/sockopt.js';
import { isOwnPathManager, type Transport } from '../policy/types.js';
import { planOf, thePathManager, type PathManagerView, type PathPlan } from './path-manager.js';

/** What is really in effect on an outgoing socket, as read back from the kernel. */
export interface TransportInEffect {
  mptcp: boolean;
  /** why MPTCP was asked for but is not in use (no kernel support, peer fell back, ...) */
  mptcpNote?: string;
  subflows?: number;
  /** what edgeward's own path manager did for the connection (pathManager ndiffports or fullmesh) */
  pathManager?: PathManagerView;
  /** the subflows under the kernel's path managers: addresses and bytes (MPTCP_SUBFLOW_ADDRS, MPTCP_TCPINFO) */
  subflowList?: Array<{ local: { address: string; port: number }; remote: { address: string; port: number }; bytes: { sent: number; received: number } }>;
  congestion?: string;
  noDelay?: boolean;
  keepAlive?: { idle: number; interval: number; count: number } | false;
  /** policy fields the kernel could not take, with the reason */
  notApplied?: string[];
}

export interface DialOptions {
  address: string;
  port: number;
  transport: Transport;
  /** ms until the connect attempt fails with ETIMEDOUT */
  connectTimeout: number;
  /** source address for the outgoing connection */
  localAddress?: string;
  /** IP_TRANSPARENT: localAddress may be a foreign address (the intercepted client's own) */
  transparent?: boolean;
  /** the client this connection is for: when it closes, the connect attempt is abandoned */
  cancelOn?: CancelSource;
}

/** A client connection whose 'close' abandons a connect (a net.Socket, a RawClient). */
export interface CancelSource {
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
  removeListener(event: 'close', listener: () => void): unknown;
}

const { EINPROGRESS } = osConstants.errno;

/** The error of a connect abandoned because its client went away. */
export function canceledError(): NodeJS.ErrnoException {
  return Object.assign(new Error('connect abandoned: the client went away'), { code: 'ECANCELED' });
}

export interface DialResult {
  /** the connected socket: edgeward's own fd, never a net.Socket (relay/splice.ts relays it) */
  fd: number;
  /**
   * the fd is in the thread's epoll set already (kernel/epoll-plane.ts, parked): a relay takes it
   * as it is; before Node gets it (a net.Socket over it) it must be unparked
   */
  parked: boolean;
  /** its own address and port (a SOCKS reply's BND.ADDR) */
  local: { address: string; port: number };
  mptcp: boolean;
  mptcpNote?: string;
  notApplied: string[];
}

function describe(e: unknown): string {
  return e instanceof KernelError ? e.code : e instanceof Error ? e.message : String(e);
}

/**
 * Applies the options Linux lets change on a live socket: congestion control, Nagle, keepalive.
 * Returns what could not be applied, with the reason.
 */
export function applyLiveOptions(fd: number, t: Transport, sides: { congestion: boolean } = { congestion: true }): string[] {
  const failed: string[] = [];
  if (sides.congestion && t.congestion !== undefined) {
    try {
      setCongestion(fd, t.congestion);
    } catch (e) {
      failed.push(`congestion ${t.congestion}: ${describe(e)}`);
    }
  }
  if (t.noDelay !== undefined) {
    try {
      setNoDelay(fd, t.noDelay);
    } catch (e) {
      failed.push(`noDelay: ${describe(e)}`);
    }
  }
  if (t.keepAlive !== undefined) {
    try {
      setKeepAlive(fd, t.keepAlive);
    } catch (e) {
      failed.push(`keepAlive: ${describe(e)}`);
    }
  }
  return failed;
}

/** The error of a failed connect, as Node's would be: errno name as code, the address in the message. */
function connectError(e: number, address: string, port: number): NodeJS.ErrnoException {
  const code = errnoName(e);
  return Object.assign(new Error(`connect ${code} ${address}:${port}`), { code, errno: -e, syscall: 'connect', address, port });
}

/** How a dial ends: the connected socket, or the connect error. */
export type DialDone = (err: NodeJS.ErrnoException | null, result?: DialResult) => void;

/**
 * Connects to address:port with the transport applied, on a socket of edgeward's own (socket(2)
 * through koffi, non-blocking connect, completion from the thread's epoll set), and calls `done`
 * once: with the result, or with the connect error (errno code), ETIMEDOUT after connectTimeout,
 * ECANCELED when cancelOn closed. `done` never runs before dialNow returns. It runs in the plane's
 * poll callback when the connect finishes there (it must not settle promises: nothing would run
 * their continuations until Node's loop turns), in setImmediate otherwise.
 */
export function dialNow(opts: DialOptions, done: DialDone): void {
  const t = opts.transport;
  const family = opts.address.includes(':') ? 6 : 4; // an IP literal: only IPv6 has colons
  const notApplied: string[] = [];
  if (opts.cancelOn?.destroyed) return later(done, canceledError());
  // edgeward's own path managers run on the kernel's userspace one, for this socket only
  let plan: PathPlan | null = null;
  let kernelPm = t.pathManager;
  if (t.mptcp && isOwnPathManager(t.pathManager)) {
    const why = thePathManager().prepare();
    if (why === null) {
      plan = planOf(t, t.pathManager);
      kernelPm = 'userspace';
    } else {
      notApplied.push(`pathManager ${t.pathManager}: ${why}; the kernel's path manager has the connection`);
      kernelPm = undefined;
    }
  }
  let opened: ReturnType<typeof openStreamSocket>;
  try {
    if (t.mptcp && (t.scheduler !== undefined || kernelPm !== undefined)) {
      const r = withMptcpSysctls({ scheduler: t.scheduler, pathManager: kernelPm }, () => openStreamSocket(family, true));
      opened = r.result;
      notApplied.push(...r.notApplied);
    } else {
      opened = openStreamSocket(family, t.mptcp === true);
    }
  } catch (e) {
    return later(done, e as NodeJS.ErrnoException);
  }
  const { fd } = opened;
  let rc: number;
  try {
    if (opts.transparent) setTransparent(fd, family);
    const failed = applyLiveOptions(fd, t);
    if (failed.length > 0) notApplied.push(...failed);
    if (opts.localAddress !== undefined) {
      const sa = sockaddr(family, opts.localAddress, 0);
      if ((c_bind(fd, sa, sa.length) as number) < 0) throw connectError(koffi.errno(), opts.address, opts.port);
    }
    rc = connectFd(fd, sockaddrNow(family, opts.address, opts.port));
  } catch (e) {
    closeFd(fd);
    return later(done, e as NodeJS.ErrnoException);
  }
  if (rc === 0) return later(done, null, dialResult(fd, false, opened, notApplied, plan, opts));
  if (rc !== -EINPROGRESS) {
    closeFd(fd);
    return later(done, connectError(-rc, opts.address, opts.port));
  }
  new Dialing(fd, opts, opened, notApplied, plan, done).start();
}

/** `done` in a turn of the loop (dialNow never calls it before it returns). */
function later(done: DialDone, err: NodeJS.ErrnoException | null, r?: DialResult): void {
  thePlane().soon(() => done(err, r));
}

/** The connected socket's result; an MPTCP socket of edgeward's own path manager is adopted by it here. */
function dialResult(fd: number, parked: boolean, opened: OpenedSocket, notApplied: string[], plan: PathPlan | null, opts: DialOptions): DialResult {
  const local = localAddress(fd) ?? { address: '', port: 0 };
  if (plan && opened.mptcp) thePathManager().adopt(fd, plan, local, { address: opts.address, port: opts.port });
  return { fd, parked, local, mptcp: opened.mptcp, mptcpNote: opened.mptcpUnavailable, notApplied };
}

/** this thread's connects in progress, by deadline (their connectTimeout) */
const connectDeadlines = new DeadlineList();

/**
 * A connect in progress, as one object (no closure per step): it waits for the socket to be
 * writable in the plane, for its deadline, and for the client's close, and calls `done` once.
 */
class Dialing extends DeadlineItem {
  private settled = false;
  private readonly plane = thePlane();

  constructor(
    private readonly fd: number,
    private readonly opts: DialOptions,
    private readonly opened: OpenedSocket,
    private readonly notApplied: string[],
    private readonly plan: PathPlan | null,
    private readonly done: DialDone,
  ) {
    super();
  }

  start(): void {
    connectDeadlines.arm(this, this.opts.connectTimeout);
    this.opts.cancelOn?.once('close', this.onCancel);
    this.plane.whenWritable(this.fd, this);
  }

  /** in the plane's poll callback: writable with no error or hangup flagged is connected, no getsockopt(SO_ERROR) needed */
  onWritable(events: number): void {
    const e = (events & (EPOLLERR | EPOLLHUP)) === 0 && (events & EPOLLOUT) !== 0 ? 0 : socketError(this.fd);
    this.finish(e === 0 ? null : connectError(e, this.opts.address, this.opts.port), false);
  }

  /** connectTimeout passed */
  override onDeadline(): void {
    this.finish(Object.assign(new Error(`connect ETIMEDOUT ${this.opts.address}:${this.opts.port}`), { code: 'ETIMEDOUT' }), false);
  }

  /** the client's close: answered in a turn of the loop, not inside that close */
  private readonly onCancel = (): void => {
    this.finish(canceledError(), true);
  };

  private finish(err: NodeJS.ErrnoException | null, later: boolean): void {
    if (this.settled) return;
    this.settled = true;
    connectDeadlines.disarm(this);
    this.opts.cancelOn?.removeListener('close', this.onCancel);
    this.plane.stopWaiting(this.fd, this);
    if (err) closeFd(this.fd);
    const r = err ? undefined : dialResult(this.fd, true, this.opened, this.notApplied, this.plan, this.opts);
    if (later) this.plane.soon(() => this.done(err, r));
    else this.done(err, r);
  }
}

/** Reads back the transport in effect on an outgoing socket (its fd). */
export function transportInEffect(fd: number): TransportInEffect {
  const out: TransportInEffect = { mptcp: false };
  try {
    if (isMptcpSocket(fd)) {
      const info = getMptcpInfo(fd);
      if (info && !info.fallback) {
        out.mptcp = true;
        out.subflows = info.subflows;
        const pm = thePathManager().view(fd, info.token);
        if (pm) out.pathManager = pm;
        else out.subflowList = subflowCounters(fd).map((c) => ({ local: c.local, remote: c.remote, bytes: { sent: c.bytesAcked, received: c.bytesReceived } }));
      } else {
        out.mptcpNote = 'peer does not speak MPTCP: fell back to TCP';
        out.subflows = 1;
      }
    }
    out.congestion = getCongestion(fd);
    out.noDelay = getNoDelay(fd);
    out.keepAlive = getKeepAlive(fd);
  } catch {
    // the socket closed between the lookup and the read; report what we have
  }
  return out;
}
