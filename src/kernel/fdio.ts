// The raw-fd calls of edgeward's own data plane (relay/splice.ts): epoll, splice(2) through pipes,
// read/write, shutdown, and taking a connected socket away from Node. Each call here is one system
// call through koffi; none allocates per call except where a result must come back to JS.
import koffi from 'koffi';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { arch } from 'node:process';
import { libc, SOL_SOCKET } from './libc.js';
import { KernelError, socketFd } from './sockopt.js';

const { ENOSYS } = osConstants.errno;

export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const F_SETPIPE_SZ = 1031;
const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const SHUT_WR = 1;
const SO_LINGER = 13;
const SO_ERROR = 4;

/** struct epoll_event: packed (12 bytes) on x86_64, naturally aligned (16) elsewhere. */
export const EPOLL_EVENT_SIZE = arch === 'x64' ? 12 : 16;
/** where epoll_data (a u64; edgeward keeps the fd in its low 32 bits) starts in an epoll_event */
export const EPOLL_DATA_AT = arch === 'x64' ? 4 : 8;

const c_epoll_create1 = libc.func('int epoll_create1(int flags)');
const c_epoll_ctl = libc.func('int epoll_ctl(int epfd, int op, int fd, void *event)');
const c_epoll_wait = libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)');
/** glibc >= 2.35 (Linux >= 5.11): a timeout in nanoseconds; null where the library lacks it */
const c_epoll_pwait2 = ((): ReturnType<typeof libc.func> | null => {
  try {
    return libc.func('int epoll_pwait2(int epfd, void *events, int maxevents, const void *timeout, const void *sigmask)');
  } catch {
    return null;
  }
})();
const c_splice = libc.func('intptr_t splice(int fd_in, void *off_in, int fd_out, void *off_out, size_t len, unsigned int flags)');
const c_pipe2 = libc.func('int pipe2(void *fds, int flags)');
const c_read = libc.func('intptr_t read(int fd, void *buf, size_t count)');
const c_write = libc.func('intptr_t write(int fd, const void *buf, size_t count)');
const c_shutdown = libc.func('int shutdown(int fd, int how)');
const c_fcntl = libc.func('int fcntl(int fd, int cmd, int arg)');
const c_close = libc.func('int close(int fd)');
const c_setsockopt = libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');
const c_getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)');
const c_connect = libc.func('int connect(int fd, const void *addr, uint32_t len)');
const c_getsockname = libc.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)');
const c_accept4 = libc.func('int accept4(int fd, void *addr, _Inout_ uint32_t *len, int flags)');
const c_sched_yield = libc.func('int sched_yield()');

/** Gives the CPU to another thread that waits for it on this CPU, if any (sched_yield). */
export function yieldCpu(): void {
  c_sched_yield();
}

/** The errno of the call that just failed. */
export function errno(): number {
  return koffi.errno();
}

function checked(call: string, rc: number): number {
  if (rc < 0) throw new KernelError(call, koffi.errno());
  return rc;
}

export function epollCreate(): number {
  return checked('epoll_create1', c_epoll_create1(EPOLL_CLOEXEC) as number);
}

const eventBuf = Buffer.alloc(EPOLL_EVENT_SIZE);

/** Adds `fd` to the epoll set with `events`; the fd itself is the event's data. */
export function epollAdd(epfd: number, fd: number, events: number): void {
  eventBuf.writeUInt32LE(events >>> 0, 0);
  eventBuf.writeUInt32LE(fd, EPOLL_DATA_AT);
  eventBuf.writeUInt32LE(0, EPOLL_DATA_AT + 4);
  checked('epoll_ctl(ADD)', c_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, eventBuf) as number);
}

/** Removes `fd` from the epoll set (closing the last fd of a socket does that too). */
export function epollDel(epfd: number, fd: number): void {
  c_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, eventBuf);
}

/** Ready events into `events` (room for `max`), waiting at most timeoutMs (0: none); how many, or -errno. */
export function epollWait(epfd: number, events: Buffer, max: number, timeoutMs: number): number {
  const n = c_epoll_wait(epfd, events, max, timeoutMs) as number;
  return n < 0 ? -koffi.errno() : n;
}

/** struct timespec (two longs) */
const timespec = Buffer.alloc(16);
let pwait2Works = c_epoll_pwait2 !== null;

/**
 * As epollWait, waiting at most `timeoutNs` nanoseconds (below a second): epoll_pwait2, or
 * epoll_wait with the timeout rounded up to a millisecond where the kernel or libc lacks it.
 */
export function epollWaitNs(epfd: number, events: Buffer, max: number, timeoutNs: number): number {
  if (pwait2Works) {
    timespec.writeUInt32LE(timeoutNs, 8); // tv_sec 0; tv_nsec (a long) < 1e9: its low half
    const n = c_epoll_pwait2!(epfd, events, max, timespec, null) as number;
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e !== ENOSYS) return -e;
    pwait2Works = false;
  }
  return epollWait(epfd, events, max, Math.ceil(timeoutNs / 1e6));
}

/**
 * A pipe for splicing, both ends non-blocking: [read end, write end, capacity]; null when none can
 * be had (EMFILE, ...). It is asked to hold `size` bytes; it keeps the kernel's default (64 KiB)
 * when that is refused (fs.pipe-max-size, a user over fs.pipe-user-pages-soft).
 */
export function openPipe(size: number): [number, number, number] | null {
  const fds = Buffer.alloc(8);
  if ((c_pipe2(fds, O_NONBLOCK | O_CLOEXEC) as number) < 0) return null;
  const r = fds.readInt32LE(0);
  const got = c_fcntl(r, F_SETPIPE_SZ, size) as number;
  return [r, fds.readInt32LE(4), got > 0 ? got : 65536];
}

/** splice(2) between a socket and a pipe, non-blocking; bytes moved, 0 at end of stream, or -errno. */
export function splice(from: number, to: number, len: number): number {
  const n = c_splice(from, null, to, null, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK) as number;
  return n < 0 ? -koffi.errno() : n;
}

/** read(2) into buf[0..len); bytes read, 0 at end of stream, or -errno. */
export function readFd(fd: number, buf: Buffer, len: number): number {
  const n = c_read(fd, buf, len) as number;
  return n < 0 ? -koffi.errno() : n;
}

/** write(2) of buf[0..len) (koffi passes the Buffer's memory; all of it by default); bytes written or -errno. */
export function writeFd(fd: number, buf: Buffer, len = buf.length): number {
  const n = c_write(fd, buf, len) as number;
  return n < 0 ? -koffi.errno() : n;
}

/** Sends FIN: the far end reads end of stream, the other direction goes on. */
export function shutdownWrite(fd: number): void {
  c_shutdown(fd, SHUT_WR);
}

export function closeFd(fd: number): void {
  c_close(fd);
}

const lingerZero = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);

/** Closes with a reset (SO_LINGER 0): the far end learns the connection broke, not that it ended. */
export function resetAndClose(fd: number): void {
  c_setsockopt(fd, SOL_SOCKET, SO_LINGER, lingerZero, 8);
  c_close(fd);
}

/** scratch for the calls below that return through a buffer: each reads it before it returns */
const intOut = Buffer.alloc(4);
const nameOut = Buffer.alloc(28);
const nameLen = [28];

/** The socket's pending error (SO_ERROR), cleared by reading it; 0 when none. */
export function socketError(fd: number): number {
  const len = [4];
  if ((c_getsockopt(fd, SOL_SOCKET, SO_ERROR, intOut, len) as number) < 0) return koffi.errno();
  return intOut.readInt32LE(0);
}

/** A second fd for the socket, close-on-exec; throws a KernelError (EMFILE, ...). */
export function dupCloexec(fd: number): number {
  return checked('fcntl(F_DUPFD_CLOEXEC)', c_fcntl(fd, F_DUPFD_CLOEXEC, 0) as number);
}

/** connect(2) of a non-blocking socket: 0 when connected at once, else -errno (-EINPROGRESS: wait until writable). */
export function connectFd(fd: number, sa: Buffer): number {
  return (c_connect(fd, sa, sa.length) as number) < 0 ? -koffi.errno() : 0;
}

/** The socket's own address and port (getsockname), IPv6 in its compressed text form; null when it has none. */
export function localAddress(fd: number): { address: string; port: number } | null {
  nameLen[0] = 28;
  if ((c_getsockname(fd, nameOut, nameLen) as number) < 0) return null;
  return parseSockaddr(nameOut);
}

/** The address and port in a struct sockaddr_in / sockaddr_in6; IPv4-mapped IPv6 as Node shows it (::ffff:a.b.c.d). */
function parseSockaddr(sa: Buffer): { address: string; port: number } | null {
  const family = sa.readUInt16LE(0);
  const port = sa.readUInt16BE(2);
  if (family === 2) return { address: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port };
  if (family !== 10) return null;
  if (sa.readUInt32BE(8) === 0 && sa.readUInt32BE(12) === 0 && sa.readUInt32BE(16) === 0xffff) return { address: `::ffff:${sa[20]}.${sa[21]}.${sa[22]}.${sa[23]}`, port };
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(sa.readUInt16BE(8 + i * 2).toString(16));
  return { address: compressIpv6(groups), port };
}

/** RFC 5952 text of eight hex groups: the longest run of two or more zero groups becomes "::". */
function compressIpv6(g: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return g.join(':');
  return `${g.slice(0, best).join(':')}::${g.slice(best + bestLen).join(':')}`;
}

/**
 * Takes a connected socket away from Node: a second fd for it (the relay's to close), the bytes
 * Node had read but nobody consumed, and the net.Socket closed (its fd only: the connection lives
 * on in the new fd). Write everything through Node before, or hand it to the relay (`reply`).
 * Throws a KernelError when no fd is left (EMFILE); the socket is then still Node's.
 */
export function takeSocket(s: Socket): { fd: number; buffered: Buffer | null } {
  const fd = socketFd(s);
  if (fd === null || s.destroyed) throw new KernelError('take socket', osConstants.errno.EBADF);
  const copy = dupCloexec(fd);
  let buffered: Buffer | null = null;
  if (s.readableLength > 0) {
    const chunks: Buffer[] = [];
    for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) chunks.push(c);
    buffered = Buffer.concat(chunks);
  }
  s.destroy();
  return { fd: copy, buffered };
}

const SOL_MPTCP = 284;
const MPTCP_TCPINFO = 2;
const MPTCP_SUBFLOW_ADDRS = 3;
/** struct mptcp_subflow_data: size_subflow_data, num_subflows, size_kernel, size_user (u32 each) */
const SUBFLOW_DATA_LEN = 16;
/** the part of struct tcp_info asked for per subflow: up to tcpi_bytes_received (u64 @128) */
const SUBFLOW_TCP_INFO_LEN = 136;
/** struct mptcp_subflow_addrs: two struct sockaddr_storage */
const SUBFLOW_ADDRS_LEN = 256;
/** subflows read per connection at most */
const SUBFLOWS_READ = 16;

/** One subflow of an MPTCP connection as the kernel reports it (MPTCP_SUBFLOW_ADDRS with MPTCP_TCPINFO). */
export interface SubflowCounters {
  local: { address: string; port: number };
  remote: { address: string; port: number };
  /** bytes the peer acknowledged on this subflow (tcpi_bytes_acked) */
  bytesAcked: number;
  /** bytes received on this subflow (tcpi_bytes_received) */
  bytesReceived: number;
  /** retransmission timeouts in a row without an answer (tcpi_backoff): > 1 is a path that went silent */
  backoff: number;
  /** ms since data last arrived on this subflow (tcpi_last_data_recv) */
  lastDataRecvMs: number;
}

/** An array getsockopt of SOL_MPTCP (struct mptcp_subflow_data then elements of `size`): the elements' bytes, or null. */
function subflowArray(fd: number, name: number, size: number): { buf: Buffer; count: number } | null {
  const buf = Buffer.alloc(SUBFLOW_DATA_LEN + SUBFLOWS_READ * size);
  buf.writeUInt32LE(SUBFLOW_DATA_LEN, 0);
  buf.writeUInt32LE(size, 12);
  const len = [buf.length];
  if ((c_getsockopt(fd, SOL_MPTCP, name, buf, len) as number) < 0) return null;
  const got = len[0] ?? 0;
  const sizeUser = buf.readUInt32LE(12);
  if (sizeUser === 0 || got < SUBFLOW_DATA_LEN) return null;
  const count = Math.min(buf.readUInt32LE(4), Math.floor((got - SUBFLOW_DATA_LEN) / sizeUser), SUBFLOWS_READ);
  return { buf: buf.subarray(SUBFLOW_DATA_LEN), count: sizeUser === size ? count : 0 };
}

/**
 * The subflows of an MPTCP socket with their addresses and byte counts (the kernel lists them in
 * the same order for both options); [] when the fd is not MPTCP or the kernel lacks the options.
 */
export function subflowCounters(fd: number): SubflowCounters[] {
  const addrs = subflowArray(fd, MPTCP_SUBFLOW_ADDRS, SUBFLOW_ADDRS_LEN);
  const infos = subflowArray(fd, MPTCP_TCPINFO, SUBFLOW_TCP_INFO_LEN);
  if (!addrs || !infos) return [];
  const out: SubflowCounters[] = [];
  for (let i = 0; i < Math.min(addrs.count, infos.count); i++) {
    const a = addrs.buf.subarray(i * SUBFLOW_ADDRS_LEN, (i + 1) * SUBFLOW_ADDRS_LEN);
    const local = parseSockaddr(a.subarray(0, 128));
    const remote = parseSockaddr(a.subarray(128, 256));
    if (!local || !remote) continue;
    const t = infos.buf.subarray(i * SUBFLOW_TCP_INFO_LEN, (i + 1) * SUBFLOW_TCP_INFO_LEN);
    out.push({ local, remote, bytesAcked: Number(t.readBigUInt64LE(120)), bytesReceived: Number(t.readBigUInt64LE(128)), backoff: t.readUInt8(4), lastDataRecvMs: t.readUInt32LE(52) });
  }
  return out;
}

const acceptAddr = Buffer.alloc(28);
const acceptLen = [28];

/** accept4(2), non-blocking and close-on-exec: the new fd and the peer's address, or -errno (-EAGAIN: none waiting). */
export function acceptFd(listenFd: number): { fd: number; address: string; port: number } | number {
  acceptLen[0] = 28;
  const fd = c_accept4(listenFd, acceptAddr, acceptLen, O_NONBLOCK | O_CLOEXEC) as number;
  if (fd < 0) return -koffi.errno();
  const peer = parseSockaddr(acceptAddr) ?? { address: '', port: 0 };
  return { fd, address: peer.address, port: peer.port };
}
