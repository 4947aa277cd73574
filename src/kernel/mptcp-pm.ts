// The kernel's MPTCP path-manager family over generic netlink (`mptcp_pm`, include/uapi/linux/
// mptcp.h): the events of every MPTCP connection in the namespace, and the commands a userspace
// path manager gives for one connection, named by its token: create or destroy a subflow, change a
// subflow's backup flag. The commands work only on connections whose path
// manager is "userspace" (the kernel refuses the others).
import { isIPv4 } from 'node:net';
import { attr, AttrWriter, GenlSocket, parseGenl, read, resolveFamily, type GenlFamily, type NlMessage } from './netlink.js';
import { constants as osConstants } from 'node:os';
import { AF_INET, AF_INET6, c_inet_ntop, inetPton } from './libc.js';
import { KernelError } from './sockopt.js';

const MPTCP_PM_NAME = 'mptcp_pm';
const MPTCP_PM_EV_GRP_NAME = 'mptcp_pm_events';

const MPTCP_PM_CMD_SET_FLAGS = 7;
const MPTCP_PM_CMD_SUBFLOW_CREATE = 10;
const MPTCP_PM_CMD_SUBFLOW_DESTROY = 11;

const MPTCP_PM_ATTR_ADDR = 1;
const MPTCP_PM_ATTR_TOKEN = 4;
const MPTCP_PM_ATTR_ADDR_REMOTE = 6;

const MPTCP_PM_ADDR_ATTR_FAMILY = 1;
const MPTCP_PM_ADDR_ATTR_ID = 2;
const MPTCP_PM_ADDR_ATTR_ADDR4 = 3;
const MPTCP_PM_ADDR_ATTR_ADDR6 = 4;
const MPTCP_PM_ADDR_ATTR_PORT = 5;
const MPTCP_PM_ADDR_ATTR_FLAGS = 6;
const MPTCP_PM_ADDR_ATTR_IF_IDX = 7;

export const MPTCP_PM_ADDR_FLAG_BACKUP = 1 << 2;

const MPTCP_ATTR_TOKEN = 1;
const MPTCP_ATTR_LOC_ID = 3;
const MPTCP_ATTR_REM_ID = 4;
const MPTCP_ATTR_SADDR4 = 5;
const MPTCP_ATTR_SADDR6 = 6;
const MPTCP_ATTR_DADDR4 = 7;
const MPTCP_ATTR_DADDR6 = 8;
const MPTCP_ATTR_SPORT = 9;
const MPTCP_ATTR_DPORT = 10;
const MPTCP_ATTR_BACKUP = 11;
const MPTCP_ATTR_ERROR = 12;
const MPTCP_ATTR_IF_IDX = 15;
const MPTCP_ATTR_SERVER_SIDE = 18;

const INET6_ADDRSTRLEN = 46;

/** The events of mptcp_pm_events (enum mptcp_event_type), by name. */
export const MPTCP_EVENTS = {
  1: 'created',
  2: 'established',
  3: 'closed',
  6: 'announced',
  7: 'removed',
  10: 'sub_established',
  11: 'sub_closed',
  13: 'sub_priority',
  15: 'listener_created',
  16: 'listener_closed',
} as const;

export type MptcpEventType = (typeof MPTCP_EVENTS)[keyof typeof MPTCP_EVENTS];

/** One event, with the attributes it carried (which ones depends on the type: see mptcp.h). */
export interface MptcpEvent {
  type: MptcpEventType;
  token?: number;
  /** local address and port (the subflow's, or the connection's first subflow's) */
  saddr?: string;
  sport?: number;
  /** remote address and port (for "announced": the address the peer announced) */
  daddr?: string;
  dport?: number;
  locId?: number;
  remId?: number;
  backup?: boolean;
  ifIndex?: number;
  /** for a subflow that closed: the socket error (errno) that closed it, when there was one */
  error?: number;
  serverSide?: boolean;
}

/** The text of a 4- or 16-byte address (inet_ntop: IPv6 compressed as RFC 5952 has it). */
function ipText(b: Buffer | undefined): string | undefined {
  if (b === undefined || (b.length !== 4 && b.length !== 16)) return undefined;
  const out = Buffer.alloc(INET6_ADDRSTRLEN);
  if (c_inet_ntop(b.length === 4 ? AF_INET : AF_INET6, b, out, INET6_ADDRSTRLEN) === null) return undefined;
  return read.str(out);
}

/** Decodes one message of the event group; null when it is not an mptcp_pm event this code knows. */
export function decodeMptcpEvent(m: NlMessage, familyId: number): MptcpEvent | null {
  if (m.type !== familyId) return null;
  const g = parseGenl(m.payload);
  const type = (MPTCP_EVENTS as Record<number, MptcpEventType | undefined>)[g.cmd];
  if (type === undefined) return null;
  const a = g.attrs;
  const ev: MptcpEvent = { type };
  const token = read.u32(attr(a, MPTCP_ATTR_TOKEN));
  if (token !== undefined) ev.token = token;
  const saddr = ipText(attr(a, MPTCP_ATTR_SADDR4) ?? attr(a, MPTCP_ATTR_SADDR6));
  if (saddr !== undefined) ev.saddr = saddr;
  const daddr = ipText(attr(a, MPTCP_ATTR_DADDR4) ?? attr(a, MPTCP_ATTR_DADDR6));
  if (daddr !== undefined) ev.daddr = daddr;
  const sport = read.be16(attr(a, MPTCP_ATTR_SPORT));
  if (sport !== undefined) ev.sport = sport;
  const dport = read.be16(attr(a, MPTCP_ATTR_DPORT));
  if (dport !== undefined) ev.dport = dport;
  const locId = read.u8(attr(a, MPTCP_ATTR_LOC_ID));
  if (locId !== undefined) ev.locId = locId;
  const remId = read.u8(attr(a, MPTCP_ATTR_REM_ID));
  if (remId !== undefined) ev.remId = remId;
  const backup = read.u8(attr(a, MPTCP_ATTR_BACKUP));
  if (backup !== undefined) ev.backup = backup !== 0;
  const ifIndex = read.s32(attr(a, MPTCP_ATTR_IF_IDX));
  if (ifIndex !== undefined) ev.ifIndex = ifIndex;
  const error = read.u8(attr(a, MPTCP_ATTR_ERROR));
  if (error !== undefined) ev.error = error;
  const serverSide = read.u8(attr(a, MPTCP_ATTR_SERVER_SIDE));
  if (serverSide !== undefined) ev.serverSide = serverSide !== 0;
  return ev;
}

/** An address for a command: IP, port (0: any), and for a local one its id, flags and device. */
export interface PmAddress {
  ip: string;
  port?: number;
  /** local address id (1..255); 0 or absent: the kernel picks one */
  id?: number;
  flags?: number;
  ifIndex?: number;
}

function addressAttrs(a: PmAddress): AttrWriter {
  const w = new AttrWriter();
  const v4 = isIPv4(a.ip);
  w.u16(MPTCP_PM_ADDR_ATTR_FAMILY, v4 ? AF_INET : AF_INET6);
  if (a.id !== undefined && a.id > 0) w.u8(MPTCP_PM_ADDR_ATTR_ID, a.id);
  const bytes = inetPton(a.ip);
  if (!bytes) throw new KernelError(`inet_pton(${a.ip})`, osConstants.errno.EINVAL);
  w.bytes(v4 ? MPTCP_PM_ADDR_ATTR_ADDR4 : MPTCP_PM_ADDR_ATTR_ADDR6, bytes);
  if (a.port !== undefined && a.port > 0) w.u16(MPTCP_PM_ADDR_ATTR_PORT, a.port);
  if (a.flags !== undefined && a.flags !== 0) w.u32(MPTCP_PM_ADDR_ATTR_FLAGS, a.flags);
  if (a.ifIndex !== undefined && a.ifIndex > 0) w.s32(MPTCP_PM_ADDR_ATTR_IF_IDX, a.ifIndex);
  return w;
}

/** The mptcp_pm family: its commands on a socket of their own, and its events on another. */
export class MptcpPm {
  private readonly cmd: GenlSocket;

  private constructor(readonly family: GenlFamily) {
    this.cmd = new GenlSocket();
  }

  /** The family as this kernel has it; throws a KernelError (ENOENT) when the kernel has no MPTCP. */
  static open(): MptcpPm {
    const s = new GenlSocket();
    try {
      const family = resolveFamily(s, MPTCP_PM_NAME);
      if (!family) throw new KernelError('generic netlink family mptcp_pm', osConstants.errno.ENOENT);
      return new MptcpPm(family);
    } finally {
      s.close();
    }
  }

  /** A socket subscribed to the event group; read it with `receiveEvents`. Needs CAP_NET_ADMIN. */
  openEvents(): GenlSocket {
    const group = this.family.groups.get(MPTCP_PM_EV_GRP_NAME);
    if (group === undefined) throw new KernelError(`mptcp_pm group ${MPTCP_PM_EV_GRP_NAME}`, osConstants.errno.ENOENT);
    const s = new GenlSocket();
    try {
      s.setReceiveBuffer(1 << 20);
      s.join(group, MPTCP_PM_EV_GRP_NAME);
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /** Reads the waiting events of an event socket; returns as GenlSocket.receive (1: more may wait; -ENOBUFS: some were lost). */
  receiveEvents(events: GenlSocket, onEvent: (e: MptcpEvent) => void): number {
    return events.receive((m) => {
      const e = decodeMptcpEvent(m, this.family.id);
      if (e) onEvent(e);
    });
  }

  /** A new subflow of connection `token` from `local` (port 0: any) to `remote`. */
  createSubflow(token: number, local: PmAddress, remote: PmAddress): void {
    this.onSubflow(MPTCP_PM_CMD_SUBFLOW_CREATE, token, local, remote, 'subflow create');
  }

  /** Closes the subflow of `token` between exactly these addresses and ports. */
  destroySubflow(token: number, local: PmAddress, remote: PmAddress): void {
    this.onSubflow(MPTCP_PM_CMD_SUBFLOW_DESTROY, token, local, remote, 'subflow destroy');
  }

  /** Sets or clears the backup flag (MP_PRIO) of the subflow of `token` between these addresses. */
  setBackup(token: number, local: PmAddress, remote: PmAddress, backup: boolean): void {
    this.onSubflow(MPTCP_PM_CMD_SET_FLAGS, token, { ...local, flags: backup ? MPTCP_PM_ADDR_FLAG_BACKUP : 0 }, remote, 'set flags');
  }

  /** A command about one subflow of `token`: its local and remote address. */
  private onSubflow(cmd: number, token: number, local: PmAddress, remote: PmAddress, what: string): void {
    const w = new AttrWriter().u32(MPTCP_PM_ATTR_TOKEN, token).nest(MPTCP_PM_ATTR_ADDR, addressAttrs(local)).nest(MPTCP_PM_ATTR_ADDR_REMOTE, addressAttrs(remote));
    this.cmd.request(this.family.id, cmd, this.family.version, w, what);
  }

  close(): void {
    this.cmd.close();
  }
}
