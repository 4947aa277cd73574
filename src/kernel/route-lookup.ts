// Which way the kernel sends one TCP flow: RTM_GETROUTE over rtnetlink with the whole 5-tuple, as
// `ip route get DST from SRC ipproto tcp sport S dport D` asks. With equal-cost multipath and L4
// hashing (net.ipv4.fib_multipath_hash_policy=1) the answer depends on the ports, so a path manager
// can choose source ports whose subflows take different links.
import { AF_INET, AF_INET6, inetPton } from './libc.js';
import { attr, AttrWriter, NetlinkSocket, parseAttrs, read } from './netlink.js';

const NETLINK_ROUTE = 0;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
/** struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags (u32) */
const RTMSG_LEN = 12;
const RTA_DST = 1;
const RTA_SRC = 2;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_IP_PROTO = 27;
const RTA_SPORT = 28;
const RTA_DPORT = 29;
const IPPROTO_TCP = 6;

/** Route lookups on an rtnetlink socket of their own. */
export class RouteLookup {
  private readonly sock = new NetlinkSocket(NETLINK_ROUTE);

  /**
   * The path a TCP flow src:sport -> dst:dport takes: its output device and gateway as one key
   * ("3/0aff0b02"); null when there is no route or the kernel refused the question.
   */
  pathOf(src: string, dst: string, sport: number, dport: number): string | null {
    const s = inetPton(src);
    const d = inetPton(dst);
    if (!s || !d || s.length !== d.length) return null;
    const v4 = d.length === 4;
    const attrs = new AttrWriter().bytes(RTA_DST, d).bytes(RTA_SRC, s).u8(RTA_IP_PROTO, IPPROTO_TCP).be16(RTA_SPORT, sport).be16(RTA_DPORT, dport).toBuffer();
    const payload = Buffer.alloc(RTMSG_LEN + attrs.length);
    payload.writeUInt8(v4 ? AF_INET : AF_INET6, 0);
    payload.writeUInt8(v4 ? 32 : 128, 1); // dst_len
    payload.writeUInt8(v4 ? 32 : 128, 2); // src_len
    attrs.copy(payload, RTMSG_LEN);
    try {
      for (const m of this.sock.requestRaw(RTM_GETROUTE, payload, 'route get')) {
        if (m.type !== RTM_NEWROUTE || m.payload.length < RTMSG_LEN) continue;
        const a = parseAttrs(m.payload, RTMSG_LEN);
        const oif = read.u32(attr(a, RTA_OIF));
        if (oif === undefined) return null;
        return `${oif}/${attr(a, RTA_GATEWAY)?.toString('hex') ?? ''}`;
      }
    } catch {
      return null;
    }
    return null;
  }

  close(): void {
    this.sock.close();
  }
}
