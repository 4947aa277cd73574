// The named counters of an nftables table, read over netlink (NETLINK_NETFILTER, NFT_MSG_GETOBJ as a
// dump) instead of by running `nft -j list`: no process to start, which under a packet flood on a
// small machine took 0.7-2.6 s a reading (softirq load slows fork and exec), and the shield reads its
// counters every second to see attacks start.
import { attr, AttrWriter, NetlinkParseError, NetlinkSocket, NLM_F_DUMP, parseAttrs, read, type NlAttr } from './netlink.js';
import type { NftFamily, NftNamedCounter, NftTable } from './nft.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWOBJ = 18;
const NFT_MSG_GETOBJ = 19;
const NFGENMSG_LEN = 4;
const NFTA_OBJ_TABLE = 1;
const NFTA_OBJ_NAME = 2;
const NFTA_OBJ_TYPE = 3;
const NFTA_OBJ_DATA = 4;
const NFT_OBJECT_COUNTER = 1;
const NFTA_COUNTER_BYTES = 1;
const NFTA_COUNTER_PACKETS = 2;

/** NFPROTO_* of each nft family. */
const NFPROTO: Record<NftFamily, number> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };

function be64(a: NlAttr[], type: number): number {
  const b = attr(a, type);
  return b !== undefined && b.length >= 8 ? Number(b.readBigUInt64BE(0)) : 0;
}

/** Reads one table's named counters; one netlink socket, kept open. Needs CAP_NET_ADMIN. */
export class NftCounterReader {
  private readonly sock = new NetlinkSocket(NETLINK_NETFILTER);
  private readonly request: Buffer;

  constructor(private readonly table: NftTable) {
    const objType = Buffer.alloc(4);
    objType.writeUInt32BE(NFT_OBJECT_COUNTER);
    // nfgenmsg (family, version 0, res_id 0), then the table's name and the object type to dump
    const attrs = new AttrWriter().str(NFTA_OBJ_TABLE, table.name).bytes(NFTA_OBJ_TYPE, objType).toBuffer();
    this.request = Buffer.concat([Buffer.from([NFPROTO[table.family], 0, 0, 0]), attrs]);
  }

  /** The table's named counters now; throws a NetlinkError (e.g. ENOENT: no such table). */
  read(): NftNamedCounter[] {
    const replies = this.sock.requestRaw((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ, this.request, `list counters of ${this.table.family} ${this.table.name}`, NLM_F_DUMP);
    const out: NftNamedCounter[] = [];
    for (const m of replies) {
      if (m.type !== ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ)) continue;
      if (m.payload.length < NFGENMSG_LEN) throw new NetlinkParseError('nftables object message cut short');
      const a = parseAttrs(m.payload, NFGENMSG_LEN);
      if (read.str(attr(a, NFTA_OBJ_TABLE)) !== this.table.name) continue;
      const name = read.str(attr(a, NFTA_OBJ_NAME));
      const data = attr(a, NFTA_OBJ_DATA);
      if (name === undefined || data === undefined) continue;
      const d = parseAttrs(data);
      out.push({ name, packets: be64(d, NFTA_COUNTER_PACKETS), bytes: be64(d, NFTA_COUNTER_BYTES) });
    }
    return out;
  }

  close(): void {
    this.sock.close();
  }
}
