// Opens the outgoing connection with a transport policy applied, re-applies a changed policy to an
// open socket, and reads back what the kernel really has in effect.
import net from 'node:net';
import { withMptcpSysctls } from '../kernel/capabilities.js';
import {
  closeFd,
  getCongestion,
  getKeepAlive,
  getMptcpInfo,
  getNoDelay,
  isMptcpSocket,
  KernelError,
  openStreamSocket,
  setCongestion,
  setKeepAlive,
  setNoDelay,
  setTransparent,
} from '../kernel/sockopt.js';
import type { Transport } from '../policy/types.js';

/** What is really in effect on an outgoing socket, as read back from the kernel. */
export interface TransportInEffect {
  mptcp: boolean;
  /** why MPTCP was asked for but is not in use (no kernel support, peer fell back, ...) */
  mptcpNote?: string;
  subflows?: number;
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
  cancelOn?: net.Socket;
}

/** The error of a connect abandoned because its client went away. */
export function canceledError(): NodeJS.ErrnoException {
  return Object.assign(new Error('connect abandoned: the client went away'), { code: 'ECANCELED' });
}

export interface DialResult {
  socket: net.Socket;
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

/** Connects to address:port with the transport applied. Rejects with the connect error (errno code). */
export function dial(opts: DialOptions): Promise<DialResult> {
  const t = opts.transport;
  const family = net.isIPv6(opts.address) ? 6 : 4;
  let socket: net.Socket;
  let mptcp = false;
  let mptcpNote: string | undefined;
  const notApplied: string[] = [];

  if (t.mptcp || t.congestion !== undefined || t.keepAlive !== undefined || t.noDelay !== undefined || opts.transparent) {
    const open = (): ReturnType<typeof openStreamSocket> => openStreamSocket(family, t.mptcp === true);
    let opened: ReturnType<typeof openStreamSocket>;
    try {
      if (t.mptcp && (t.scheduler !== undefined || t.pathManager !== undefined)) {
        const r = withMptcpSysctls({ scheduler: t.scheduler, pathManager: t.pathManager }, open);
        opened = r.result;
        notApplied.push(...r.notApplied);
      } else {
        opened = open();
      }
    } catch (e) {
      return Promise.reject(e);
    }
    mptcp = opened.mptcp;
    mptcpNote = opened.mptcpUnavailable;
    if (opts.transparent) {
      try {
        setTransparent(opened.fd, family);
      } catch (e) {
        closeFd(opened.fd);
        return Promise.reject(e);
      }
    }
    notApplied.push(...applyLiveOptions(opened.fd, t));
    try {
      socket = new net.Socket({ fd: opened.fd, readable: true, writable: true, allowHalfOpen: true });
    } catch (e) {
      closeFd(opened.fd);
      return Promise.reject(e);
    }
  } else {
    socket = new net.Socket({ allowHalfOpen: true });
  }

  const cancelOn = opts.cancelOn;
  if (cancelOn?.destroyed) {
    socket.destroy();
    return Promise.reject(canceledError());
  }
  return new Promise<DialResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`connect ETIMEDOUT ${opts.address}:${opts.port}`), { code: 'ETIMEDOUT' });
      socket.destroy(err);
    }, opts.connectTimeout);
    const onCancel = (): void => void socket.destroy(canceledError());
    const onError = (err: Error): void => {
      clearTimeout(timer);
      cancelOn?.removeListener('close', onCancel);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    cancelOn?.once('close', onCancel);
    socket.connect({ host: opts.address, port: opts.port, localAddress: opts.localAddress, family }, () => {
      clearTimeout(timer);
      cancelOn?.removeListener('close', onCancel);
      socket.removeListener('error', onError);
      resolve({ socket, mptcp, mptcpNote, notApplied });
    });
  });
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
