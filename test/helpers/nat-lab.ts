// The NAT lab for rendezvous: two hosts, each on a private LAN behind its own NAT router, and a
// "public" namespace between the NATs that holds the STUN/TURN server and routes between the two WAN
// segments (RFC 5737 documentation ranges, so no public address looks private to the server):
//
//   hosta 10.247.1.2 --lan-- 10.247.1.1 nata 198.51.100.2 --wan-- 198.51.100.1 pub 203.0.113.1 --wan-- 203.0.113.2 natb 10.247.2.1 --lan-- 10.247.2.2 hostb
//
// Each NAT router masquerades what leaves its WAN interface: `masquerade` keeps the source port, so
// the mapping is endpoint-independent; `masquerade random` picks a new port per destination
// (symmetric). Filtering is what Linux conntrack gives, address- and port-dependent: the forward chain
// drops by default and lets through LAN -> WAN and established/related, the input chain drops new
// connections from the WAN. The LANs are unroutable from pub: it has no route to 10.247.0.0/16.
import type { Lab, Link, Netns } from './netns.js';

/** endpoint-independent: `masquerade`; symmetric: `masquerade random` */
export type NatFlavour = 'endpoint-independent' | 'symmetric';

export interface NatSide {
  host: Netns;
  nat: Netns;
  /** the host's LAN address (its ICE host candidate) */
  hostAddr: string;
  /** the NAT's WAN address (what the server sees: the host's server-reflexive address) */
  wanAddr: string;
  lan: Link;
  wan: Link;
}

export interface NatLab {
  pub: Netns;
  /** where the STUN/TURN server listens and relays: 203.0.113.1 */
  serverAddr: string;
  a: NatSide;
  b: NatSide;
  /** both LANs, for --turn-allow-peers */
  lanCidr: string;
  flavour: NatFlavour;
}

/** The NAT router's ruleset: one nftables table, loaded atomically. `blockUdp`: the LAN may not send UDP out (a network that allows only TCP). */
export function natRules(flavour: NatFlavour, blockUdp = false): string {
  return `table ip natlab {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ${flavour === 'symmetric' ? 'masquerade random' : 'masquerade'}
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
${blockUdp ? '    iifname "lan" meta l4proto udp drop\n' : ''}    iifname "lan" oifname "wan" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
}
`;
}

async function natSide(lab: Lab, pub: Netns, name: 'a' | 'b', wanNet: string, lanNet: string, flavour: NatFlavour, blockUdp = false): Promise<NatSide> {
  const nat = await lab.addNamespace(`nat${name}`);
  const host = await lab.addNamespace(`host${name}`);
  const wan = await lab.link(pub, nat, { addrA: `${wanNet}.1/24`, addrB: `${wanNet}.2/24`, ifA: `nat${name}`, ifB: 'wan' });
  const lan = await lab.link(nat, host, { addrA: `${lanNet}.1/24`, addrB: `${lanNet}.2/24`, ifA: 'lan', ifB: 'eth0' });
  await lab.ip(host, ['route', 'add', 'default', 'via', lan.a.ip]);
  await lab.ip(nat, ['route', 'add', 'default', 'via', wan.a.ip]);
  await lab.sysctl(nat, 'net.ipv4.ip_forward', 1);
  await lab.exec(nat, ['nft', '-f', '-'], { input: natRules(flavour, blockUdp) });
  return { host, nat, hostAddr: lan.b.ip, wanAddr: wan.b.ip, lan, wan };
}

/**
 * Builds the topology above with both NATs of one flavour, or NAT b of `opts.b` (and with
 * `opts.blockUdpB`, no UDP out of LAN b).
 */
export async function buildNatLab(lab: Lab, flavour: NatFlavour, opts: { b?: NatFlavour; blockUdpB?: boolean } = {}): Promise<NatLab> {
  const pub = await lab.addNamespace('pub');
  await lab.sysctl(pub, 'net.ipv4.ip_forward', 1);
  const a = await natSide(lab, pub, 'a', '198.51.100', '10.247.1', flavour);
  const b = await natSide(lab, pub, 'b', '203.0.113', '10.247.2', opts.b ?? flavour, opts.blockUdpB);
  return { pub, serverAddr: b.wan.a.ip, a, b, lanCidr: '10.247.0.0/16', flavour };
}
