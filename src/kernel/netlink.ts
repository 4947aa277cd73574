// Generic netlink (genetlink) through koffi: a NETLINK_GENERIC socket, the family lookup through
// the controller, requests answered synchronously, multicast groups, and a bounded parser for what
// the kernel sends. The parser never trusts a length: a message or attribute that claims more
// bytes than it has is a NetlinkParseError, never a read past the buffer.
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { EdgewardError } from '../core/errors.js';
import { c_bind, c_close, c_socket, libc, SOCK_CLOEXEC, SOCK_NONBLOCK } from './libc.js';
import { KernelError, errnoName } from './sockopt.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_GENERIC = 16;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_EXT_ACK = 11;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;

export const NLMSG_HDRLEN = 16;
const GENL_HDRLEN = 4;
const NLA_HDRLEN = 4;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
/** NLM_F_ROOT | NLM_F_MATCH: every object the request's attributes select, in as many reads as it takes */
export const NLM_F_DUMP = 0x300;
/** NLA_F_NESTED and NLA_F_NET_BYTEORDER: flags in an attribute's type, not part of it */
const NLA_TYPE_MASK = 0x3fff;
export const NLA_F_NESTED = 0x8000;

const GENL_ID_CTRL = 0x10;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;
const CTRL_ATTR_VERSION = 3;
const CTRL_ATTR_MCAST_GROUPS = 7;
const CTRL_ATTR_MCAST_GRP_NAME = 1;
const CTRL_ATTR_MCAST_GRP_ID = 2;

const { EAGAIN, EINTR, ENOENT } = osConstants.errno;

const c_read = libc.func('intptr_t read(int fd, void *buf, size_t count)');
const c_write = libc.func('intptr_t write(int fd, const void *buf, size_t count)');
const c_setsockopt = libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');

/** What the kernel sent does not hold together (a length past the end, a header cut short). */
export class NetlinkParseError extends EdgewardError {
  constructor(message: string) {
    super('EPROTO', `netlink: ${message}`);
  }
}

/** One attribute: its type (flags masked off) and its payload, a view into the message. */
export interface NlAttr {
  type: number;
  nested: boolean;
  value: Buffer;
}

/** The attributes in buf[start..end), each checked against the bounds (nla_len >= 4, within end). */
export function parseAttrs(buf: Buffer, start = 0, end = buf.length): NlAttr[] {
  const out: NlAttr[] = [];
  let at = start;
  while (at + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(at);
    const rawType = buf.readUInt16LE(at + 2);
    if (len < NLA_HDRLEN || at + len > end) throw new NetlinkParseError(`attribute of type ${rawType & NLA_TYPE_MASK} at ${at} claims ${len} bytes, ${end - at} left`);
    out.push({ type: rawType & NLA_TYPE_MASK, nested: (rawType & NLA_F_NESTED) !== 0, value: buf.subarray(at + NLA_HDRLEN, at + len) });
    at += align4(len);
  }
  return out;
}

/** The first attribute of `type` in `attrs`. */
export function attr(attrs: readonly NlAttr[], type: number): Buffer | undefined {
  for (const a of attrs) if (a.type === type) return a.value;
  return undefined;
}

/** Payload readers that check the payload's size: undefined when it is absent or too short. */
export const read = {
  u8: (b: Buffer | undefined): number | undefined => (b !== undefined && b.length >= 1 ? b.readUInt8(0) : undefined),
  u16: (b: Buffer | undefined): number | undefined => (b !== undefined && b.length >= 2 ? b.readUInt16LE(0) : undefined),
  be16: (b: Buffer | undefined): number | undefined => (b !== undefined && b.length >= 2 ? b.readUInt16BE(0) : undefined),
  u32: (b: Buffer | undefined): number | undefined => (b !== undefined && b.length >= 4 ? b.readUInt32LE(0) : undefined),
  s32: (b: Buffer | undefined): number | undefined => (b !== undefined && b.length >= 4 ? b.readInt32LE(0) : undefined),
  /** a NUL-terminated string (the NUL optional) */
  str: (b: Buffer | undefined): string | undefined => {
    if (b === undefined) return undefined;
    const nul = b.indexOf(0);
    return b.toString('utf8', 0, nul < 0 ? b.length : nul);
  },
};

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A netlink message as received: header fields and its payload (a view). */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** The messages in buf[0..n), each checked against the bounds. */
export function parseMessages(buf: Buffer, n = buf.length): NlMessage[] {
  const out: NlMessage[] = [];
  let at = 0;
  while (at + NLMSG_HDRLEN <= n) {
    const len = buf.readUInt32LE(at);
    if (len < NLMSG_HDRLEN || at + len > n) throw new NetlinkParseError(`message at ${at} claims ${len} bytes, ${n - at} left`);
    out.push({ type: buf.readUInt16LE(at + 4), flags: buf.readUInt16LE(at + 6), seq: buf.readUInt32LE(at + 8), pid: buf.readUInt32LE(at + 12), payload: buf.subarray(at + NLMSG_HDRLEN, at + len) });
    at += align4(len);
  }
  return out;
}

/** A generic netlink message's command, version and attributes. */
export interface GenlMessage {
  cmd: number;
  version: number;
  attrs: NlAttr[];
}

/** The genetlink header and attributes of a message's payload. */
export function parseGenl(payload: Buffer): GenlMessage {
  if (payload.length < GENL_HDRLEN) throw new NetlinkParseError(`generic netlink header cut short (${payload.length} bytes)`);
  return { cmd: payload.readUInt8(0), version: payload.readUInt8(1), attrs: parseAttrs(payload, GENL_HDRLEN) };
}

/** Builds attributes (and nests of them) for a request. */
export class AttrWriter {
  private readonly parts: Buffer[] = [];
  private length = 0;

  private push(type: number, value: Buffer): this {
    const len = NLA_HDRLEN + value.length;
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
    value.copy(b, NLA_HDRLEN);
    this.parts.push(b);
    this.length += b.length;
    return this;
  }

  u8(type: number, v: number): this {
    return this.push(type, Buffer.from([v & 0xff]));
  }

  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.push(type, b);
  }

  be16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.push(type, b);
  }

  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.push(type, b);
  }

  s32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return this.push(type, b);
  }

  bytes(type: number, v: Buffer): this {
    return this.push(type, v);
  }

  str(type: number, v: string): this {
    return this.push(type, Buffer.from(`${v}\0`));
  }

  nest(type: number, inner: AttrWriter): this {
    return this.push(type | NLA_F_NESTED, inner.toBuffer());
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

/** A request the kernel refused: the errno it answered with, and its extended message when it gave one. */
export class NetlinkError extends KernelError {
  constructor(
    call: string,
    errno: number,
    readonly kernelMessage?: string,
  ) {
    super(call, errno);
    if (kernelMessage) this.message = `${call} failed: ${errnoName(errno)} (${kernelMessage})`;
  }
}

/** A generic netlink family the kernel has: its id, version and multicast groups by name. */
export interface GenlFamily {
  id: number;
  version: number;
  groups: Map<string, number>;
}

const NLMSGERR_ATTR_MSG = 1;
const NLM_F_ACK_TLVS = 0x200;
const NLM_F_CAPPED = 0x100;

/**
 * A netlink socket, non-blocking. Requests are answered before write returns (the kernel handles
 * them in the sender's context), so `request` reads the answer at once.
 */
export class NetlinkSocket {
  readonly fd: number;
  private seq = 1;
  private readonly buf = Buffer.alloc(65536);

  constructor(protocol: number) {
    const fd = c_socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol) as number;
    if (fd < 0) throw new KernelError(`socket(AF_NETLINK, ${protocol})`, koffi.errno());
    const sa = Buffer.alloc(12);
    sa.writeUInt16LE(AF_NETLINK, 0);
    if ((c_bind(fd, sa, 12) as number) < 0) {
      const e = koffi.errno();
      c_close(fd);
      throw new KernelError('bind(netlink)', e);
    }
    this.fd = fd;
    this.setInt(SOL_NETLINK, NETLINK_EXT_ACK, 1); // the kernel says why it refused (best effort: older kernels lack it)
  }

  private setInt(level: number, name: number, v: number): boolean {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return (c_setsockopt(this.fd, level, name, b, 4) as number) >= 0;
  }

  /** Joins a multicast group (events of a family); CAP_NET_ADMIN for most families' groups. */
  join(group: number, what: string): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(group);
    if ((c_setsockopt(this.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, b, 4) as number) < 0) throw new KernelError(`join netlink group ${what}`, koffi.errno());
  }

  /** A larger receive buffer, so a burst of events does not overflow it (ENOBUFS). */
  setReceiveBuffer(bytes: number): void {
    if (!this.setInt(SOL_SOCKET, SO_RCVBUFFORCE, bytes)) this.setInt(SOL_SOCKET, SO_RCVBUF, bytes);
  }

  /**
   * Sends one message of `type` with `payload`, asking for an ack, and returns the replies that came
   * before the ack (a get's answer), or before the end of a dump (`flags` NLM_F_DUMP: the kernel
   * queues each next part as the one before is read). Throws a NetlinkError when the kernel refused it.
   */
  requestRaw(type: number, payload: Buffer, what: string, flags = 0): NlMessage[] {
    const len = NLMSG_HDRLEN + payload.length;
    const msg = Buffer.alloc(len);
    const seq = this.seq++ >>> 0;
    msg.writeUInt32LE(len, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | flags, 6);
    msg.writeUInt32LE(seq, 8);
    msg.writeUInt32LE(0, 12);
    payload.copy(msg, NLMSG_HDRLEN);
    for (;;) {
      const w = c_write(this.fd, msg, len) as number;
      if (w >= 0) break;
      const e = koffi.errno();
      if (e !== EINTR) throw new KernelError(`netlink ${what}`, e);
    }
    const replies: NlMessage[] = [];
    for (;;) {
      const n = c_read(this.fd, this.buf, this.buf.length) as number;
      if (n < 0) {
        const e = koffi.errno();
        if (e === EINTR) continue;
        // the kernel answers before write returns; nothing there means no answer will come
        throw new KernelError(`netlink ${what}: no answer`, e === EAGAIN ? osConstants.errno.ETIMEDOUT : e);
      }
      for (const m of parseMessages(this.buf, n)) {
        if (m.seq !== seq) continue; // a late answer to an earlier request
        if (m.type === NLMSG_ERROR) {
          if (m.payload.length < 4) throw new NetlinkParseError('error message cut short');
          const code = -m.payload.readInt32LE(0);
          if (code === 0) return replies;
          throw new NetlinkError(`netlink ${what}`, code, extAckMessage(m));
        }
        if (m.type === NLMSG_DONE) return replies;
        replies.push({ ...m, payload: Buffer.from(m.payload) }); // the next read reuses the buffer
      }
    }
  }

  /**
   * The messages waiting on the socket (events of the groups it joined), at most `max` reads: 0
   * when it read all there was, 1 when it stopped at `max` (more may wait), -errno when a read
   * failed otherwise than "nothing there" (ENOBUFS: events were lost).
   */
  receive(onMessage: (m: NlMessage) => void, max = 256): number {
    for (let i = 0; i < max; i++) {
      const n = c_read(this.fd, this.buf, this.buf.length) as number;
      if (n < 0) {
        const e = koffi.errno();
        if (e === EAGAIN) return 0;
        if (e === EINTR) continue;
        return -e;
      }
      for (const m of parseMessages(this.buf, n)) onMessage(m);
    }
    return 1;
  }

  close(): void {
    c_close(this.fd);
  }
}

/** A NETLINK_GENERIC socket: requests to a family by id, command and version. */
export class GenlSocket extends NetlinkSocket {
  constructor() {
    super(NETLINK_GENERIC);
  }

  /**
   * Sends one request to `family` with `cmd`, `version` and the attributes, asking for an ack, and
   * returns the replies that came before it (a get's answer). Throws a NetlinkError when the kernel
   * refused it.
   */
  request(family: number, cmd: number, version: number, attrs: AttrWriter, what: string): GenlMessage[] {
    const body = attrs.toBuffer();
    const payload = Buffer.alloc(GENL_HDRLEN + body.length);
    payload.writeUInt8(cmd, 0);
    payload.writeUInt8(version, 1);
    body.copy(payload, GENL_HDRLEN);
    return this.requestRaw(family, payload, what).map((m) => parseGenl(m.payload));
  }
}

/** The kernel's text in an extended ack (NLMSGERR_ATTR_MSG), when it sent one. */
function extAckMessage(m: NlMessage): string | undefined {
  if ((m.flags & NLM_F_ACK_TLVS) === 0) return undefined;
  // struct nlmsgerr: int error, then the request's header (and its payload unless capped)
  if (m.payload.length < 4 + NLMSG_HDRLEN) return undefined;
  const reqLen = m.payload.readUInt32LE(4);
  const tlvAt = 4 + ((m.flags & NLM_F_CAPPED) !== 0 ? NLMSG_HDRLEN : align4(reqLen));
  if (tlvAt > m.payload.length) return undefined;
  try {
    return read.str(attr(parseAttrs(m.payload, tlvAt), NLMSGERR_ATTR_MSG));
  } catch {
    return undefined;
  }
}

/** Looks up a generic netlink family by name; null when the kernel does not have it (module not loaded, too old). */
export function resolveFamily(sock: GenlSocket, name: string): GenlFamily | null {
  let replies: GenlMessage[];
  try {
    replies = sock.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, new AttrWriter().str(CTRL_ATTR_FAMILY_NAME, name), `get family ${name}`);
  } catch (e) {
    if (e instanceof KernelError && e.errno === ENOENT) return null;
    throw e;
  }
  const reply = replies[0];
  if (!reply) throw new NetlinkParseError(`no answer to get family ${name}`);
  const id = read.u16(attr(reply.attrs, CTRL_ATTR_FAMILY_ID));
  if (id === undefined) throw new NetlinkParseError(`family ${name} without an id`);
  const groups = new Map<string, number>();
  const nest = attr(reply.attrs, CTRL_ATTR_MCAST_GROUPS);
  if (nest) {
    for (const g of parseAttrs(nest)) {
      const inner = parseAttrs(g.value);
      const gname = read.str(attr(inner, CTRL_ATTR_MCAST_GRP_NAME));
      const gid = read.u32(attr(inner, CTRL_ATTR_MCAST_GRP_ID));
      if (gname !== undefined && gid !== undefined) groups.set(gname, gid);
    }
  }
  return { id, version: read.u32(attr(reply.attrs, CTRL_ATTR_VERSION)) ?? 1, groups };
}
