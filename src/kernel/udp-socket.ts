// UDP sockets below node:dgram: the fd is edgeward's own (socket(2) through koffi), Node's event loop
// watches it (a libuv poll handle), and datagrams move in batches, recvmmsg(2) in and sendmmsg(2)
// out, up to BATCH per system call. node:dgram costs a JS request object, a callback and a
// system call per datagram; a TURN relay moves four datagrams per echoed message, so that
// machinery was most of its CPU (bench/README.md).
//
// Sends are queued and leave together at the end of the current callback (a microtask, or the end
// of the pass over the readable sockets), or when the socket is writable again if the kernel's send
// buffer was full. A datagram the kernel refuses (no route, port 0, a firewall's EPERM, too big) is
// dropped alone and counted; the rest of the batch goes on. The poll handle is koffi.node.poll,
// which koffi's changelog still calls undocumented: this file is the one place that uses it.
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { AF_INET, AF_INET6, c_bind, c_close, c_inet_pton, c_socket, IPV6_V6ONLY, libc, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOL_IPV6, SOL_SOCKET } from './libc.js';
import { check, KernelError, setInt, sockaddr } from './sockopt.js';

const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;

/** Datagrams per recvmmsg/sendmmsg call. */
const BATCH = 32;
/** Room for one datagram, received or sent (the largest a UDP payload can be). */
const SLOT = 65536;
/** recvmmsg calls per socket per turn of the event loop: one busy socket cannot starve the rest. */
const RX_CALLS_PER_TURN = 8;
/** Datagrams a socket holds while the kernel's send buffer is full; beyond, they are dropped. */
const MAX_QUEUED = 4096;

// struct msghdr and struct mmsghdr on 64-bit Linux (x86_64, aarch64): msg_name @0, msg_namelen @8,
// msg_iov @16, msg_iovlen @24, msg_control @32, msg_controllen @40, msg_flags @48; msg_len @56.
const MMSG = 64;
const IOV = 16;
const NAME = 28; // sizeof(struct sockaddr_in6)

const c_getsockname = libc.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)');
const c_recvmmsg = libc.func('int recvmmsg(int fd, void *vec, unsigned int n, int flags, void *timeout)');
const c_sendmmsg = libc.func('int sendmmsg(int fd, void *vec, unsigned int n, int flags)');
const c_inet_ntop = libc.func('const char *inet_ntop(int af, const void *src, _Out_ char *dst, uint32_t size)');

/** Native memory for the headers, names and payloads of one batch, with a Buffer over it. */
interface Region {
  ptr: unknown;
  addr: bigint;
  view: Buffer;
}

function region(bytes: number): Region {
  const ptr = koffi.alloc('uint8_t', bytes);
  return { ptr, addr: koffi.address(ptr), view: Buffer.from(koffi.view(ptr, bytes)) };
}

/** The batch buffers, one set per thread (a thread handles one socket at a time). */
interface Arena {
  rxHdr: Region;
  rxName: Region;
  rxData: Region;
  txHdr: Region;
  txName: Region;
  txIov: Region;
  txData: Region;
  /** kept only so that the memory the headers point into lives as long as they do */
  iovs: Region[];
}

let arena: Arena | null = null;
/** receive slots whose msg_namelen the last recvmmsg overwrote (the others still hold NAME) */
let rxUsed = BATCH;

function theArena(): Arena {
  if (arena) return arena;
  if (koffi.sizeof('void *') !== 8) throw new KernelError('recvmmsg (a 64-bit Linux is needed)', osConstants.errno.ENOSYS);
  const rxIov = region(BATCH * IOV);
  const txIov = region(BATCH * IOV);
  const a: Arena = { rxHdr: region(BATCH * MMSG), rxName: region(BATCH * NAME), rxData: region(BATCH * SLOT), txHdr: region(BATCH * MMSG), txName: region(BATCH * NAME), txIov, txData: region(BATCH * SLOT), iovs: [rxIov] };
  // the slots are fixed: slot i's header names slot i's address, iovec and payload room; per
  // datagram only lengths and addresses are written (no pointer arithmetic in JS)
  for (let i = 0; i < BATCH; i++) {
    rxIov.view.writeBigUInt64LE(a.rxData.addr + BigInt(i * SLOT), i * IOV);
    rxIov.view.writeBigUInt64LE(BigInt(SLOT), i * IOV + 8);
    txIov.view.writeBigUInt64LE(a.txData.addr + BigInt(i * SLOT), i * IOV);
    for (const [hdr, name, iov] of [
      [a.rxHdr, a.rxName, rxIov],
      [a.txHdr, a.txName, txIov],
    ] as const) {
      hdr.view.writeBigUInt64LE(name.addr + BigInt(i * NAME), i * MMSG);
      hdr.view.writeBigUInt64LE(iov.addr + BigInt(i * IOV), i * MMSG + 16);
      hdr.view.writeBigUInt64LE(1n, i * MMSG + 24);
    }
  }
  arena = a;
  return a;
}

export interface UdpSocketOptions {
  family: 4 | 6;
  /** an IP literal (IPv6 without brackets) */
  host: string;
  /** 0: a port the kernel picks */
  port: number;
  /** SO_RCVBUF (the kernel caps it at net.core.rmem_max) */
  recvBufferSize?: number;
  /** SO_SNDBUF (capped at net.core.wmem_max) */
  sendBufferSize?: number;
}

/** What a socket counts: datagrams the kernel refused, and datagrams dropped for a full queue. */
export interface UdpSocketCounters {
  sendErrors: number;
  queueDrops: number;
  /** datagrams longer than the receive room (never on UDP's 64 KiB bound) */
  truncated: number;
}

interface PollEvents {
  readable: boolean;
  writable: boolean;
}

/** koffi's libuv poll handle (koffi.node.poll; its typings give the callback one argument, it passes status and events). */
type PollCallback = (status: number, events: PollEvents) => void;

interface PollHandle {
  start(opts: { readable?: boolean; writable?: boolean }, cb: PollCallback): void;
  stop(): void;
  close(): void;
}

interface Outgoing {
  data: Buffer;
  /** the destination's 4 or 16 address bytes */
  ip: Buffer;
  port: number;
}

/** Sockets with datagrams queued, flushed once at the end of the current callback. */
const dirty = new Set<UdpSocket>();
let flushScheduled = false;
/** Sockets the poll found readable, read in the check phase (see onReadable). */
const readable = new Set<UdpSocket>();
let readScheduled = false;
/** Every open socket: a poll handle only keeps polling while something references it. */
const open = new Set<UdpSocket>();
/** IPv4 sender texts by address, bounded: peers repeat, and each text is a string to build. */
const ipv4Texts = new Map<number, string>();

function flushAll(): void {
  flushScheduled = false;
  for (const s of dirty) s.flush();
  dirty.clear();
}

/** One pass over every readable socket; their replies queue up and leave together, batched per socket, at the end. */
function readAll(): void {
  readScheduled = false;
  const ready = [...readable];
  readable.clear();
  for (const s of ready) s.drain();
}

/** A bound UDP socket of edgeward's own: datagrams in through onMessage, out through send. */
export class UdpSocket {
  /**
   * Called for each datagram received, with the sender's IP (canonical text) and port. The data is
   * the caller's to keep.
   */
  onMessage: ((data: Buffer, address: string, port: number) => void) | null = null;
  readonly counters: UdpSocketCounters = { sendErrors: 0, queueDrops: 0, truncated: 0 };
  /** datagrams to send, from `head` on */
  private queue: Outgoing[] = [];
  private head = 0;
  private poll: PollHandle | null;
  private waitingWritable = false;
  private closed = false;
  /** address bytes by IP text, bounded */
  private readonly ips = new Map<string, Buffer>();

  private constructor(
    private readonly fd: number,
    readonly family: 4 | 6,
    readonly address: string,
    readonly port: number,
  ) {
    theArena();
    const poll = (koffi as unknown as { node: { poll(fd: number, opts: object, cb: PollCallback): PollHandle } }).node.poll(fd, { readable: true }, () => this.onReadable());
    this.poll = poll;
    open.add(this);
  }

  /** Opens and binds a non-blocking UDP socket (IPv6 sockets are IPv6-only). Throws a KernelError (EADDRINUSE, EADDRNOTAVAIL, ...). */
  static bind(o: UdpSocketOptions): UdpSocket {
    const fd = c_socket(o.family === 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
    check('socket(SOCK_DGRAM)', fd);
    try {
      if (o.family === 6) setInt(fd, SOL_IPV6, IPV6_V6ONLY, 1, 'IPV6_V6ONLY');
      if (o.recvBufferSize) setInt(fd, SOL_SOCKET, SO_RCVBUF, o.recvBufferSize, 'SO_RCVBUF');
      if (o.sendBufferSize) setInt(fd, SOL_SOCKET, SO_SNDBUF, o.sendBufferSize, 'SO_SNDBUF');
      const sa = sockaddr(o.family, o.host, o.port);
      check(`bind(${o.family === 6 ? `[${o.host}]` : o.host}:${o.port}/udp)`, c_bind(fd, sa, sa.length) as number);
      const name = Buffer.alloc(NAME);
      const len = [NAME];
      check('getsockname', c_getsockname(fd, name, len) as number);
      return new UdpSocket(fd, o.family, o.host, name.readUInt16BE(2));
    } catch (e) {
      c_close(fd);
      throw e;
    }
  }

  /** Datagrams waiting for room in the kernel's send buffer. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /**
   * Queues one datagram to address:port; it leaves with the others at the end of this callback.
   * false when it cannot be sent at all (not an IP of the socket's family, port out of range, the
   * socket closed, the queue full); those are counted and dropped.
   */
  send(data: Buffer, port: number, address: string): boolean {
    if (this.closed) return false;
    if (this.queue.length - this.head >= MAX_QUEUED) {
      this.counters.queueDrops++;
      return false;
    }
    const ip = Number.isInteger(port) && port >= 1 && port <= 65535 ? this.ipOf(address) : null;
    if (!ip || data.length > SLOT) {
      this.counters.sendErrors++;
      return false;
    }
    this.queue.push({ data, ip, port });
    if (!this.waitingWritable) {
      dirty.add(this);
      if (!flushScheduled) {
        flushScheduled = true;
        queueMicrotask(flushAll);
      }
    }
    return true;
  }

  /** Stops polling and closes the fd; queued datagrams go first, as far as the kernel takes them. */
  close(): void {
    if (this.closed) return;
    if (this.queued > 0 && !this.waitingWritable) this.flush();
    this.closed = true;
    this.queue = [];
    this.head = 0;
    dirty.delete(this);
    readable.delete(this);
    open.delete(this);
    this.poll?.close();
    this.poll = null;
    c_close(this.fd);
  }

  private ipOf(address: string): Buffer | null {
    let ip = this.ips.get(address);
    if (!ip) {
      ip = Buffer.alloc(this.family === 6 ? 16 : 4);
      if ((c_inet_pton(this.family === 6 ? AF_INET6 : AF_INET, address, ip) as number) !== 1) return null;
      if (this.ips.size >= 4096) this.ips.clear();
      this.ips.set(address, ip);
    }
    return ip;
  }

  /**
   * The poll handle's callback runs outside Node's callback scope (promises it settled would wait
   * for some later callback), so it only marks the socket; the reading happens in setImmediate, in
   * the same turn of the event loop, where microtasks run as usual. That pass reads every socket
   * the poll found readable before the queued replies leave: a reply to many clients through one
   * socket goes out in one sendmmsg.
   */
  private onReadable(): void {
    if (this.closed) return;
    readable.add(this);
    if (!readScheduled) {
      readScheduled = true;
      setImmediate(readAll);
    }
  }

  /** Reads what the socket holds (a bounded number of batches) and hands each datagram to onMessage. */
  drain(): void {
    const a = theArena();
    const hdr = a.rxHdr.view;
    for (let call = 0; call < RX_CALLS_PER_TURN && !this.closed; call++) {
      for (let i = 0; i < rxUsed; i++) hdr.writeUInt32LE(NAME, i * MMSG + 8);
      const n = c_recvmmsg(this.fd, a.rxHdr.ptr, BATCH, MSG_DONTWAIT, null) as number;
      rxUsed = Math.max(n, 0);
      if (n <= 0) return; // EAGAIN: empty; a pending socket error is read (and cleared) this way too
      for (let i = 0; i < n && !this.closed; i++) {
        const len = hdr.readUInt32LE(i * MMSG + 56);
        if ((hdr.readInt32LE(i * MMSG + 48) & MSG_TRUNC) !== 0) {
          this.counters.truncated++;
          continue;
        }
        const data = Buffer.allocUnsafe(len);
        a.rxData.view.copy(data, 0, i * SLOT, i * SLOT + len);
        const at = i * NAME;
        this.onMessage?.(data, this.peerIp(a.rxName.view, at), a.rxName.view.readUInt16BE(at + 2));
      }
      if (n < BATCH) return;
    }
    // more is waiting: the poll reports it again next turn, after other sockets had theirs
  }

  /** The sender's IP as text (IPv4 texts are kept, a bounded number: peers repeat). */
  private peerIp(names: Buffer, at: number): string {
    if (names.readUInt16LE(at) === AF_INET) {
      const key = names.readUInt32BE(at + 4);
      let text = ipv4Texts.get(key);
      if (text === undefined) {
        text = `${names[at + 4]}.${names[at + 5]}.${names[at + 6]}.${names[at + 7]}`;
        if (ipv4Texts.size >= 4096) ipv4Texts.clear();
        ipv4Texts.set(key, text);
      }
      return text;
    }
    const text = Buffer.alloc(46);
    c_inet_ntop(AF_INET6, names.subarray(at + 8, at + 24), text, 46);
    return text.toString('latin1', 0, text.indexOf(0));
  }

  /** Sends the queue through sendmmsg until it is empty or the kernel's buffer is full. */
  flush(): void {
    if (this.closed) return;
    const a = theArena();
    const v6 = this.family === 6;
    const nameLen = v6 ? NAME : 16;
    while (this.head < this.queue.length) {
      const n = Math.min(BATCH, this.queue.length - this.head);
      for (let i = 0; i < n; i++) {
        const o = this.queue[this.head + i]!;
        o.data.copy(a.txData.view, i * SLOT);
        a.txIov.view.writeUInt32LE(o.data.length, i * IOV + 8);
        const at = i * NAME;
        a.txName.view.writeUInt16LE(v6 ? AF_INET6 : AF_INET, at);
        a.txName.view.writeUInt16BE(o.port, at + 2);
        if (v6) {
          a.txName.view.fill(0, at + 4, at + 8);
          o.ip.copy(a.txName.view, at + 8);
          a.txName.view.fill(0, at + 24, at + 28);
        } else {
          o.ip.copy(a.txName.view, at + 4);
          a.txName.view.fill(0, at + 8, at + 16);
        }
        a.txHdr.view.writeUInt32LE(nameLen, i * MMSG + 8);
      }
      const sent = c_sendmmsg(this.fd, a.txHdr.ptr, n, MSG_DONTWAIT) as number;
      if (sent > 0) {
        this.head += sent;
        continue;
      }
      const errno = koffi.errno();
      if (errno === osConstants.errno.EAGAIN) {
        this.compact();
        this.waitWritable();
        return;
      }
      // the first datagram of the batch was refused: it alone is lost
      this.counters.sendErrors++;
      this.head++;
    }
    this.queue.length = 0;
    this.head = 0;
    if (this.waitingWritable) {
      this.waitingWritable = false;
      this.poll?.start({ readable: true }, () => this.onReadable());
    }
  }

  /** Drops the sent datagrams from the queue's front. */
  private compact(): void {
    this.queue = this.queue.slice(this.head);
    this.head = 0;
  }

  private waitWritable(): void {
    if (this.waitingWritable) return;
    this.waitingWritable = true;
    this.poll?.start({ readable: true, writable: true }, (_status, ev) => {
      if (ev.readable) this.onReadable();
      // EAGAIN again keeps waiting
      if (ev.writable && !this.closed) this.flush();
    });
  }
}

/** Open edgeward UDP sockets in this thread (for tests and leak checks). */
export function openUdpSockets(): number {
  return open.size;
}
