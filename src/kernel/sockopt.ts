// The one place that calls below Node: socket(2), setsockopt(2), getsockopt(2) through koffi.
// Node cannot create an IPPROTO_MPTCP socket nor set TCP_CONGESTION/TCP_KEEPINTVL, so edgeward
// creates the fd here and hands it to net.Socket, which adopts it as an ordinary TCP handle.
import koffi from 'koffi';
import { EdgewardError } from '../core/errors.js';
import { constants as osConstants } from 'node:os';
import type { Socket } from 'node:net';
import { underMptcpSysctlLock } from './sysctl.js';
import { AF_INET, AF_INET6, c_bind, c_close, c_inet_pton, c_socket, IPV6_V6ONLY, libc, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, SOL_IP, SOL_IPV6, SOL_SOCKET } from './libc.js';

const IPPROTO_TCP = 6;
const IPPROTO_MPTCP = 262;
const IP_TRANSPARENT = 19;
const IPV6_TRANSPARENT = 75;
const SO_REUSEADDR = 2;
const SOL_MPTCP = 284;
const SO_KEEPALIVE = 9;
const SO_PROTOCOL = 38;
const TCP_NODELAY = 1;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_CONGESTION = 13;
const MPTCP_INFO = 1;
const MPTCP_INFO_FLAG_FALLBACK = 1;

const c_setsockopt = libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');
const c_getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)');
const c_listen = libc.func('int listen(int fd, int backlog)');
const c_dup = libc.func('int dup(int fd)');

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, num]) => [num, name]));

/** The errno's name (ECONNREFUSED, ...), as Node's errors carry it in `code`. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** A failed system call, carrying the errno name (EPERM, ENOENT, ...) as its code. */
export class KernelError extends EdgewardError {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    const code = errnoName(errno);
    super(code, `${call} failed: ${code}`);
  }
}

/** Throws a KernelError for a failed call (rc < 0), with errno as its code. */
export function check(call: string, rc: number): void {
  if (rc < 0) throw new KernelError(call, koffi.errno());
}

export interface OpenedSocket {
  fd: number;
  /** true when the fd is an IPPROTO_MPTCP socket */
  mptcp: boolean;
  /** why MPTCP was asked for but not used (kernel without MPTCP, net.mptcp.enabled=0, ...) */
  mptcpUnavailable?: string;
}

/** Opens a non-blocking stream socket, MPTCP when asked and available, plain TCP otherwise. */
export function openStreamSocket(family: 4 | 6, mptcp: boolean): OpenedSocket {
  const domain = family === 6 ? AF_INET6 : AF_INET;
  const type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
  if (mptcp) {
    // the new socket copies net.mptcp.* as they are now: not in the middle of another thread's swap
    const fd = underMptcpSysctlLock(() => c_socket(domain, type, IPPROTO_MPTCP) as number).result;
    if (fd >= 0) return { fd, mptcp: true };
    const err = new KernelError('socket(IPPROTO_MPTCP)', koffi.errno());
    const plain = c_socket(domain, type, IPPROTO_TCP) as number;
    check('socket', plain);
    return { fd: plain, mptcp: false, mptcpUnavailable: `kernel refused MPTCP (${err.code}); using TCP` };
  }
  const fd = c_socket(domain, type, IPPROTO_TCP) as number;
  check('socket', fd);
  return { fd, mptcp: false };
}

/**
 * struct sockaddr_in / sockaddr_in6 for bind(2) and connect(2), written straight into a slice of
 * Node's buffer pool (allocUnsafe + fill: no ArrayBuffer of its own per connection for the young
 * generation's collector to sweep).
 */
export function sockaddr(family: 4 | 6, ip: string, port: number): Buffer {
  const sa = Buffer.allocUnsafe(family === 4 ? 16 : 28).fill(0);
  sa.writeUInt16LE(family === 4 ? AF_INET : AF_INET6, 0);
  sa.writeUInt16BE(port, 2);
  // inet_pton writes the address in place: sin_addr at 4, sin6_addr at 8
  const at = sa.subarray(family === 4 ? 4 : 8, family === 4 ? 8 : 24);
  if ((c_inet_pton(family === 4 ? AF_INET : AF_INET6, ip, at) as number) !== 1) throw new KernelError(`inet_pton(${ip})`, osConstants.errno.EINVAL);
  return sa;
}

/** the thread's sockaddr for a system call made at once (sockaddrNow): sockaddr_in6's size, with views made once */
const saScratch = Buffer.alloc(28);
const saIn = saScratch.subarray(0, 16);
const saIn6 = saScratch.subarray(0, 28);
const saIn6Addr = saScratch.subarray(8, 24);

/**
 * As sockaddr, in the thread's one scratch buffer: valid until the next call, so only for a
 * system call made at once (connect). An IPv4 literal is written without a call into libc, and
 * nothing is allocated per connection.
 */
export function sockaddrNow(family: 4 | 6, ip: string, port: number): Buffer {
  saScratch.fill(0);
  saScratch.writeUInt16LE(family === 4 ? AF_INET : AF_INET6, 0);
  saScratch.writeUInt16BE(port, 2);
  if (family === 4) {
    if (!writeIpv4(ip, saScratch, 4)) throw new KernelError(`inet_pton(${ip})`, osConstants.errno.EINVAL);
    return saIn;
  }
  if ((c_inet_pton(AF_INET6, ip, saIn6Addr) as number) !== 1) throw new KernelError(`inet_pton(${ip})`, osConstants.errno.EINVAL);
  return saIn6;
}

/** Writes dotted-quad `ip` (four decimals 0-255, as inet_pton takes them) at buf[at..at+4); false when it is not one. */
function writeIpv4(ip: string, buf: Buffer, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 46; // the end closes the last part, as a dot would
    if (c >= 48 && c <= 57) {
      // inet_pton refuses a leading zero ("01")
      if (digits > 0 && value === 0) return false;
      value = value * 10 + (c - 48);
      if (value > 255 || ++digits > 3) return false;
    } else if (c === 46 && digits > 0 && part < 4) {
      buf[at + part++] = value;
      value = 0;
      digits = 0;
    } else return false;
  }
  return part === 4;
}

export interface ListenSocketOptions {
  family: 4 | 6;
  /** an IP literal (IPv6 without brackets); IPv4-mapped forms are not accepted here */
  host: string;
  port: number;
  backlog: number;
  /** IPPROTO_MPTCP: accepts MPTCP and plain TCP clients alike */
  mptcp?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: the socket TPROXY hands intercepted connections to */
  transparent?: boolean;
  /** TCP_NODELAY on the listener: the sockets accepted from it have it too (Linux copies it, TCP and MPTCP) */
  noDelay?: boolean;
}

/**
 * Opens a bound, listening, non-blocking socket for net.Server.listen({ fd }). Node cannot make a
 * listener with IPPROTO_MPTCP or IP_TRANSPARENT itself. IPv6 listeners are IPv6-only, so that an
 * IPv4 listener on the same port can sit beside them.
 */
export function openListenSocket(o: ListenSocketOptions): OpenedSocket {
  const opened = openStreamSocket(o.family, o.mptcp === true);
  const { fd } = opened;
  try {
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
    if (o.family === 6) setInt(fd, SOL_IPV6, IPV6_V6ONLY, 1, 'IPV6_V6ONLY');
    if (o.transparent) setTransparent(fd, o.family);
    if (o.noDelay) setNoDelay(fd, true);
    const sa = sockaddr(o.family, o.host, o.port);
    check(`bind(${o.family === 6 ? `[${o.host}]` : o.host}:${o.port})`, c_bind(fd, sa, sa.length) as number);
    check('listen', c_listen(fd, o.backlog) as number);
  } catch (e) {
    c_close(fd);
    throw e;
  }
  return opened;
}

/** Sets IP_TRANSPARENT (IPv4) or IPV6_TRANSPARENT: bind to a foreign address, accept TPROXY'd connections. Needs CAP_NET_ADMIN. */
export function setTransparent(fd: number, family: 4 | 6): void {
  if (family === 6) setInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT');
  else setInt(fd, SOL_IP, IP_TRANSPARENT, 1, 'IP_TRANSPARENT');
}

/**
 * A second fd for the same socket (dup(2)). fds belong to the process, so a worker thread can
 * accept on a listening socket the main thread made: one accept queue, shared by all threads.
 */
export function dupFd(fd: number): number {
  const copy = c_dup(fd) as number;
  check('dup', copy);
  return copy;
}

/**
 * The file descriptor under a connected or listening net.Socket. Node keeps it on the socket's
 * internal handle and offers no public accessor; this is the one place that reads it.
 */
export function socketFd(s: Socket): number | null {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/** Closes an fd that was never handed to Node. */
export function closeFd(fd: number): void {
  c_close(fd);
}

/** an int option's value on its way to or from the kernel (each call uses it and is done with it) */
const intBuf = Buffer.alloc(4);

/** setsockopt(2) of an int option. */
export function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const buf = intBuf;
  buf.writeInt32LE(value);
  check(`setsockopt(${what})`, c_setsockopt(fd, level, name, buf, 4) as number);
}

function getInt(fd: number, level: number, name: number, what: string): number {
  const len = [4];
  check(`getsockopt(${what})`, c_getsockopt(fd, level, name, intBuf, len) as number);
  return intBuf.readInt32LE(0);
}

/** Sets TCP_CONGESTION (on an MPTCP socket the kernel applies it to every subflow). */
export function setCongestion(fd: number, name: string): void {
  const buf = Buffer.from(name, 'latin1');
  check(`setsockopt(TCP_CONGESTION=${name})`, c_setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, buf.length) as number);
}

/** Reads TCP_CONGESTION. */
export function getCongestion(fd: number): string {
  const buf = Buffer.alloc(16);
  const len = [16];
  check('getsockopt(TCP_CONGESTION)', c_getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, len) as number);
  const end = buf.indexOf(0);
  return buf.toString('latin1', 0, end >= 0 && end < (len[0] ?? 16) ? end : len[0]);
}

export function setNoDelay(fd: number, on: boolean): void {
  setInt(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, 'TCP_NODELAY');
}

export function getNoDelay(fd: number): boolean {
  return getInt(fd, IPPROTO_TCP, TCP_NODELAY, 'TCP_NODELAY') !== 0;
}

export interface KeepAliveSetting {
  /** seconds of idle before the first probe */
  idle: number;
  /** seconds between probes */
  interval: number;
  /** unanswered probes before the connection is dropped */
  count: number;
}

/** Turns SO_KEEPALIVE on with the given timers, or off when `ka` is false. */
export function setKeepAlive(fd: number, ka: KeepAliveSetting | false): void {
  if (ka === false) {
    setInt(fd, SOL_SOCKET, SO_KEEPALIVE, 0, 'SO_KEEPALIVE');
    return;
  }
  setInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, 'SO_KEEPALIVE');
  setInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, ka.idle, 'TCP_KEEPIDLE');
  setInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, ka.interval, 'TCP_KEEPINTVL');
  setInt(fd, IPPROTO_TCP, TCP_KEEPCNT, ka.count, 'TCP_KEEPCNT');
}

export function getKeepAlive(fd: number): KeepAliveSetting | false {
  if (getInt(fd, SOL_SOCKET, SO_KEEPALIVE, 'SO_KEEPALIVE') === 0) return false;
  return {
    idle: getInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 'TCP_KEEPIDLE'),
    interval: getInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 'TCP_KEEPINTVL'),
    count: getInt(fd, IPPROTO_TCP, TCP_KEEPCNT, 'TCP_KEEPCNT'),
  };
}

/** true when the fd is an IPPROTO_MPTCP socket. */
export function isMptcpSocket(fd: number): boolean {
  return getInt(fd, SOL_SOCKET, SO_PROTOCOL, 'SO_PROTOCOL') === IPPROTO_MPTCP;
}

export interface MptcpInfo {
  /** the peer did not speak MPTCP and the connection fell back to plain TCP */
  fallback: boolean;
  /** subflows in use, the initial one included */
  subflows: number;
  bytesSent: number;
  bytesReceived: number;
  /** the connection's local token: what the path manager's netlink events and commands name it by */
  token: number;
}

/** Reads MPTCP_INFO; null when the fd is not an MPTCP socket. */
export function getMptcpInfo(fd: number): MptcpInfo | null {
  const buf = Buffer.alloc(128);
  const len = [128];
  const rc = c_getsockopt(fd, SOL_MPTCP, MPTCP_INFO, buf, len) as number;
  if (rc < 0) return null;
  const got = len[0] ?? 0;
  // Layout of struct mptcp_info (include/uapi/linux/mptcp.h): u8 subflows @0, u32 flags @8,
  // u32 token @12, u64 bytes_sent @56, u64 bytes_received @64, u8 subflows_total @80 (kernel 6.10+).
  const flags = got >= 12 ? buf.readUInt32LE(8) : 0;
  const fallback = (flags & MPTCP_INFO_FLAG_FALLBACK) !== 0 || got === 0;
  const additional = got >= 1 ? buf.readUInt8(0) : 0;
  const total = got >= 81 ? buf.readUInt8(80) : 0;
  return {
    fallback,
    subflows: fallback ? 1 : Math.max(total, additional + 1),
    bytesSent: got >= 64 ? Number(buf.readBigUInt64LE(56)) : 0,
    bytesReceived: got >= 72 ? Number(buf.readBigUInt64LE(64)) : 0,
    token: got >= 16 ? buf.readUInt32LE(12) : 0,
  };
}

/** Fields of struct tcp_info (include/uapi/linux/tcp.h); sizes in bytes, times in microseconds unless named ms. */
export interface TcpInfo {
  /** TCP_ESTABLISHED = 1, ... (the kernel's enum) */
  state: number;
  /** unanswered zero-window (persist) or keepalive probes */
  probes: number;
  /** exponential backoff of the retransmission / persist timer */
  backoff: number;
  retransmits: number;
  rtoUs: number;
  sndMss: number;
  rcvMss: number;
  /** segments sent and not yet acknowledged */
  unacked: number;
  lost: number;
  lastDataSentMs: number;
  lastDataRecvMs: number;
  lastAckRecvMs: number;
  rttUs: number;
  rttVarUs: number;
  sndCwnd: number;
  totalRetrans: number;
  /** bytes the peer acknowledged; null when the kernel does not report it */
  bytesAcked: number | null;
  bytesReceived: number | null;
  /** bytes in the send queue not yet sent (the peer's window or cwnd holds them back) */
  notsentBytes: number | null;
  /** the peer's advertised receive window after scaling (tcpi_snd_wnd, kernel 6.2+); null before */
  sndWnd: number | null;
}

const TCP_INFO = 11;
/** the kernel writes 280 bytes on 6.18 (the header here stops at tcpi_snd_wnd); room for what later kernels append */
const TCP_INFO_BUFFER = 320;
/** bytes up to tcpi_total_retrans: every kernel since 2.6 reports at least these */
const TCP_INFO_BASE = 104;

/** Reads TCP_INFO; null when getsockopt fails (not a TCP socket, closed fd). Reads only the bytes the kernel wrote. */
export function getTcpInfo(fd: number): TcpInfo | null {
  const buf = Buffer.alloc(TCP_INFO_BUFFER);
  const len = [TCP_INFO_BUFFER];
  if ((c_getsockopt(fd, IPPROTO_TCP, TCP_INFO, buf, len) as number) < 0) return null;
  const got = Math.min(len[0] ?? 0, TCP_INFO_BUFFER);
  if (got < TCP_INFO_BASE) return null;
  const u64 = (at: number): number | null => (got >= at + 8 ? Number(buf.readBigUInt64LE(at)) : null);
  const u32 = (at: number): number | null => (got >= at + 4 ? buf.readUInt32LE(at) : null);
  // offsets of struct tcp_info: u8 state @0, retransmits @2, probes @3, backoff @4; u32 rto @8,
  // snd_mss @16, rcv_mss @20, unacked @24, lost @32, last_data_sent @44, last_data_recv @52,
  // last_ack_recv @56, rtt @68, rttvar @72, snd_cwnd @80, total_retrans @100; u64 bytes_acked @120,
  // bytes_received @128; u32 notsent_bytes @144, snd_wnd @228
  return {
    state: buf.readUInt8(0),
    retransmits: buf.readUInt8(2),
    probes: buf.readUInt8(3),
    backoff: buf.readUInt8(4),
    rtoUs: buf.readUInt32LE(8),
    sndMss: buf.readUInt32LE(16),
    rcvMss: buf.readUInt32LE(20),
    unacked: buf.readUInt32LE(24),
    lost: buf.readUInt32LE(32),
    lastDataSentMs: buf.readUInt32LE(44),
    lastDataRecvMs: buf.readUInt32LE(52),
    lastAckRecvMs: buf.readUInt32LE(56),
    rttUs: buf.readUInt32LE(68),
    rttVarUs: buf.readUInt32LE(72),
    sndCwnd: buf.readUInt32LE(80),
    totalRetrans: buf.readUInt32LE(100),
    bytesAcked: u64(120),
    bytesReceived: u64(128),
    notsentBytes: u32(144),
    sndWnd: u32(228),
  };
}
