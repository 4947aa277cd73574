// The shield's packet layer as one nftables table (`inet edgeward_shield`), rendered from a checked
// spec (config.ts). The kernel does the per-packet work; this module only writes the rules.
//
//   prerouting (priority -350, before conntrack), for packets arriving on the shield's interfaces:
//     management sources pass; sources are sampled (packets per source, kept 10 s,
//     read while an attack is on); TCP flag sanity (SYN+FIN+ACK before SYN+FIN, which also matches it;
//     XMAS before FIN-without-ACK), each class with its own named counter, dropped; allowlisted
//     sources pass (counted); the hand-made and the meters' blocklists drop; SYNs to synproxy services are
//     left untracked (synproxy answers them).
//   guard (input in host mode, forward in router mode; filter priority), same interfaces:
//     management and allowlisted sources pass; per service: a per-source rate meter whose
//     offenders go on the blocklist (with a timeout), synproxy where chosen, a per-source
//     connection count (conntrack), then the global cap, shared by every service (a named limit).
//   synproxied (output): a synproxy service's connection count and passed counter meet the SYN
//     synproxy sends the server, which leaves through the output hook.
//     Under attack the service's per-source limits are halved (the chain is replaced, the sets and
//     meters stay), and put back when the attack ends.
//
// The shield never answers a packet with more than one packet to its own source: synproxy's
// SYN-ACK (a cookie, like the kernel's), nothing else; drops are silent.
import type { NftTable } from '../kernel/nft.js';
import { formatCidr, formatIp, type Cidr } from '../net/address.js';
import type { ShieldService, ShieldSpec } from './config.js';

export const SHIELD_TABLE: NftTable = { family: 'inet', name: 'edgeward_shield' };
/** "inet edgeward_shield", as nft and the log write it */
export const SHIELD_TABLE_NAME = `${SHIELD_TABLE.family} ${SHIELD_TABLE.name}`;

/** The flag classes the packet layer drops, in rule order, with the counter each has. */
export const FLAG_CLASSES = [
  { counter: 'flags_syn_fin_ack', label: 'SYN+FIN+ACK', match: 'tcp flags & (fin|syn|ack) == fin|syn|ack' },
  { counter: 'flags_syn_fin', label: 'SYN+FIN', match: 'tcp flags & (fin|syn) == fin|syn' },
  { counter: 'flags_syn_rst', label: 'SYN+RST', match: 'tcp flags & (syn|rst) == syn|rst' },
  { counter: 'flags_xmas', label: 'XMAS (FIN+PSH+URG)', match: 'tcp flags & (fin|psh|urg) == fin|psh|urg' },
  { counter: 'flags_null', label: 'NULL (no flags)', match: 'tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0' },
  { counter: 'flags_fin_no_ack', label: 'FIN without ACK', match: 'tcp flags & (fin|ack) == fin' },
] as const;

/** Named counters besides the flag classes and the per-service ones (split by protocol where the detector tells TCP and UDP floods apart). */
export const COUNTERS = {
  blockedManual: 'blocked_manual',
  /** the meters' blocklist: TCP packets, and all others */
  blockedMeterTcp: 'blocked_meter_tcp',
  blockedMeterOther: 'blocked_meter_other',
  globalCapTcp: 'global_cap_tcp',
  globalCapUdp: 'global_cap_udp',
  /** synproxy's handshake ACKs toward servers with timestamps, held back (see the synproxied chain) */
  synproxyAckHeld: 'synproxy_ack_held',
  /** packets from allowlisted sources let past the blocklists, meters and caps (flag sanity still applies) */
  allowlisted: 'allowlisted',
} as const;

/** The per-service counters: new connections or datagrams let through, caught by the rate meter, over the connection count, answered by synproxy. */
export function serviceCounters(name: string): { passed: string; overRate: string; overConns: string; synproxy: string } {
  return { passed: `svc_${name}_passed`, overRate: `svc_${name}_over_rate`, overConns: `svc_${name}_over_conns`, synproxy: `svc_${name}_synproxy` };
}

/** The sets edgeward reads and writes at run time (the API's block and allow lists). */
export const SETS = {
  management: { 4: 'management4', 6: 'management6' },
  allow: { 4: 'allow4', 6: 'allow6' },
  manual: { 4: 'manual4', 6: 'manual6' },
  block: { 4: 'block4', 6: 'block6' },
} as const;

/** The global cap's named limit. */
export const GLOBAL_LIMIT = 'global_new';

/** The sets that sample sources (packets per source over their last 10 s, for an attack's top sources). */
export const SAMPLE_SETS = {
  tcp: { 4: 'seen_tcp4', 6: 'seen_tcp6' },
  udp: { 4: 'seen_udp4', 6: 'seen_udp6' },
} as const;
/** The chain of per-service limits, re-rendered when the shield tightens or relaxes them. */
export const PROTECT_CHAIN = 'protect';
/** The connection count of the synproxy services (output hook), re-rendered with PROTECT_CHAIN. */
export const SYNPROXIED_CHAIN = 'protect_synproxied';
/** sources each sample set holds at most */
export const SAMPLE_SIZE = 4096;

/** seconds a per-source rate meter remembers a quiet source */
const METER_IDLE_S = 10;

const saddr = (f: 4 | 6): string => (f === 4 ? 'ip saddr' : 'ip6 saddr');
const addrType = (f: 4 | 6): string => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
/** IPv4 MSS behind a 1500-byte MTU, and IPv6's */
const MSS = { 4: 1460, 6: 1440 } as const;
/** this kernel's window scale; synproxy must announce it (LAB-NOTES) */
const WSCALE = 10;

/** A block as a set element: a bare address when it is one address (as nft lists it), else addr/prefix. */
export function nftElement(c: Cidr): string {
  return c.prefix === (c.family === 4 ? 32 : 128) ? formatIp(c) : formatCidr(c);
}

function elements(cidrs: readonly Cidr[], family: 4 | 6): string {
  const mine = cidrs.filter((c) => c.family === family).map(nftElement);
  return mine.length > 0 ? ` elements = { ${mine.join(', ')} };` : '';
}

function quoted(names: readonly string[]): string {
  return names.length === 1 ? `"${names[0]}"` : `{ ${names.map((n) => `"${n}"`).join(', ')} }`;
}

/** The rule prefix that picks packets coming in where attacks arrive. */
function scope(spec: ShieldSpec): string {
  return spec.interfaces.length > 0 ? `iifname ${quoted(spec.interfaces)}` : 'iifname != "lo"';
}

/** The families a service's rules are written for. */
function familiesOf(svc: ShieldService): Array<4 | 6> {
  return svc.family ? [svc.family] : [4, 6];
}

/** "ip daddr A tcp dport P" (or without the address; a port range lo-hi). */
function match(svc: ShieldService, f: 4 | 6): string {
  const port = svc.ports[0] === svc.ports[1] ? String(svc.ports[0]) : `${svc.ports[0]}-${svc.ports[1]}`;
  const dst = svc.address ? `${f === 4 ? 'ip' : 'ip6'} daddr ${svc.address} ` : `meta nfproto ${f === 4 ? 'ipv4' : 'ipv6'} `;
  return `${dst}${svc.protocol} dport ${port}`;
}

function serviceSets(spec: ShieldSpec, svc: ShieldService): string[] {
  const out: string[] = [];
  for (const f of familiesOf(svc)) {
    out.push(`  set rate_${svc.name}_v${f} { type ${addrType(f)}; flags dynamic, timeout; timeout ${METER_IDLE_S}s; size ${spec.meterSize}; }`);
    if (svc.protocol === 'tcp') out.push(`  set conns_${svc.name}_v${f} { type ${addrType(f)}; flags dynamic; size ${spec.meterSize}; }`);
  }
  return out;
}

/** A service's limits as the rules have them: as configured, or tightened under attack. */
export interface Limits {
  rate: number;
  conns: number;
}

/** The limits of a service under attack: half the per-source rate and connections (at least 1). */
export function tightened(svc: ShieldService): Limits {
  return { rate: Math.max(1, Math.floor(svc.rate / 2)), conns: Math.max(1, Math.floor(svc.conns / 2)) };
}

function serviceRules(svc: ShieldService, limits: Limits): string[] {
  const c = serviceCounters(svc.name);
  const globalCap = svc.protocol === 'tcp' ? COUNTERS.globalCapTcp : COUNTERS.globalCapUdp;
  const out: string[] = [];
  for (const f of familiesOf(svc)) {
    const m = match(svc, f);
    const meter = `update @rate_${svc.name}_v${f} { ${saddr(f)} limit rate over ${limits.rate}/second burst ${limits.rate} packets } add @${SETS.block[f]} { ${saddr(f)} } counter name ${c.overRate} drop`;
    if (svc.protocol === 'udp') {
      out.push(`    ${m} ${meter}`);
      out.push(`    ${m} limit name "${GLOBAL_LIMIT}" counter name ${globalCap} drop`);
      out.push(`    ${m} counter name ${c.passed}`);
      continue;
    }
    if (svc.syn === 'synproxy') {
      // the client's SYNs arrive untracked (prerouting): meter them, cap them, and let synproxy
      // answer; the SYN synproxy then sends the server leaves through the output hook, where
      // synproxiedRules counts the connection
      const syn = `${m} ct state untracked tcp flags & (syn|ack) == syn`;
      out.push(`    ${syn} ${meter}`);
      out.push(`    ${syn} limit name "${GLOBAL_LIMIT}" counter name ${globalCap} drop`);
      // synproxy ends the rule (it takes the packet): the counter goes before it
      out.push(`    ${m} ct state invalid,untracked counter name ${c.synproxy} synproxy mss ${MSS[f]} wscale ${WSCALE}${svc.speaksFirst ? '' : ' timestamp'} sack-perm`);
      out.push(`    ${m} ct state invalid drop`);
      continue;
    }
    out.push(`    ${m} ct state new ${meter}`);
    out.push(`    ${m} ct state new add @conns_${svc.name}_v${f} { ${saddr(f)} ct count over ${limits.conns} } counter name ${c.overConns} drop`);
    out.push(`    ${m} ct state new limit name "${GLOBAL_LIMIT}" counter name ${globalCap} drop`);
    out.push(`    ${m} ct state new counter name ${c.passed}`);
  }
  return out;
}

/**
 * The per-source connection count of the synproxy services (chain protect_synproxied). synproxy
 * answers the client's handshake and then opens the connection to the server itself: that SYN,
 * with the client's address as its source, leaves through the output hook, never through forward
 * or the scoped input, so the connection is counted (and let through or dropped) there.
 */
export function synproxiedRules(spec: ShieldSpec, tight: Tightened = new Set()): string[] {
  const out: string[] = [];
  for (const f of [4, 6] as const) out.push(`    ${saddr(f)} @${SETS.management[f]} accept`);
  for (const f of [4, 6] as const) out.push(`    ${saddr(f)} @${SETS.allow[f]} accept`);
  for (const svc of synproxyServices(spec)) {
    const c = serviceCounters(svc.name);
    const limits = tight.has(svc.name) ? tightened(svc) : { rate: svc.rate, conns: svc.conns };
    for (const f of familiesOf(svc)) {
      const m = match(svc, f);
      out.push(`    ${m} add @conns_${svc.name}_v${f} { ${saddr(f)} ct count over ${limits.conns} } counter name ${c.overConns} drop`);
      out.push(`    ${m} ct timeout set "${CLOSED_TIMEOUTS[f]}" counter name ${c.passed}`);
    }
  }
  return out;
}

/**
 * The conntrack timeout policies of synproxied connections: TIME_WAIT and CLOSE last
 * CLOSED_LINGER_S instead of the kernel's 120 and 10 s. A client that reuses a source port while
 * conntrack still has the old connection in TIME_WAIT (the server closed first) gets synproxy's
 * handshake but never reaches the server: measured in the lab, a client making 1000 connections
 * every few seconds lost 18 % of its fourth thousand. With the short linger, reuse finds the
 * entry expired.
 */
const CLOSED_TIMEOUTS = { 4: 'synproxied_closed4', 6: 'synproxied_closed6' } as const;
/** seconds a synproxied connection's conntrack entry stays in TIME_WAIT or CLOSE */
export const CLOSED_LINGER_S = 5;

/** The services whose SYNs synproxy answers. */
function synproxyServices(spec: ShieldSpec): ShieldService[] {
  return spec.services.filter((s) => s.protocol === 'tcp' && s.syn === 'synproxy');
}

/** Which services run tightened limits (by name); the rest run as configured. */
export type Tightened = ReadonlySet<string>;

/** The rules of the `protect` chain (guard hook): management and allowlist pass, then each service's limits. */
export function protectRules(spec: ShieldSpec, tight: Tightened = new Set()): string[] {
  const out: string[] = [];
  for (const f of [4, 6] as const) out.push(`    ${saddr(f)} @${SETS.management[f]} accept`);
  for (const f of [4, 6] as const) out.push(`    ${saddr(f)} @${SETS.allow[f]} accept`);
  for (const svc of spec.services) out.push(...serviceRules(svc, tight.has(svc.name) ? tightened(svc) : { rate: svc.rate, conns: svc.conns }));
  return out;
}

/** The sampling rules of the edge chain: every packet's source counted, by protocol. */
function sampleRules(): string[] {
  const out: string[] = [];
  for (const proto of ['tcp', 'udp'] as const) for (const f of [4, 6] as const) out.push(`    meta nfproto ${f === 4 ? 'ipv4' : 'ipv6'} meta l4proto ${proto} update @${SAMPLE_SETS[proto][f]} { ${saddr(f)} }`);
  return out;
}

/** The mark of packets diverted to the shield's proxy (0x6578, "ex"; the interception firewall's is 0x6577). */
export const SHIELD_MARK = 0x6578;
/** The routing table that delivers them locally ("local default dev lo table 25976"). */
export const SHIELD_ROUTE_TABLE = 25976;

/** The port of each proxied service's listener, per family; 0 until the listener is up (print). */
export type ProxyPorts = ReadonlyMap<string, Partial<Record<4 | 6, number>>>;

/** The families a proxied service needs a listener for. */
export function proxyFamilies(svc: ShieldService): Array<4 | 6> {
  return svc.proxy ? familiesOf(svc) : [];
}

/** The table body (the lines inside `table inet edgeward_shield { ... }`). */
export function renderShieldBody(spec: ShieldSpec, tight: Tightened = new Set(), ports: ProxyPorts = new Map()): string[] {
  // every service has the four counters, whether its rules use them or not (a UDP service has no
  // connection count or synproxy): the status reads them all alike
  const counters = [...FLAG_CLASSES.map((k) => k.counter), ...Object.values(COUNTERS), ...spec.services.flatMap((s) => Object.values(serviceCounters(s.name)))];
  const body: string[] = counters.map((n) => `  counter ${n} {}`);
  body.push(`  limit ${GLOBAL_LIMIT} { rate over ${spec.globalRate}/second burst ${spec.globalRate} packets }`);
  for (const f of [4, 6] as const) {
    body.push(`  set ${SETS.management[f]} { type ${addrType(f)}; flags interval;${elements(spec.management, f)} }`);
    body.push(`  set ${SETS.allow[f]} { type ${addrType(f)}; flags interval, timeout;${elements(spec.allow, f)} }`);
    body.push(`  set ${SETS.manual[f]} { type ${addrType(f)}; flags interval, timeout; }`);
    body.push(`  set ${SETS.block[f]} { type ${addrType(f)}; flags dynamic, timeout; timeout ${spec.blockTimeS}s; size ${spec.meterSize}; }`);
    for (const proto of ['tcp', 'udp'] as const) body.push(`  set ${SAMPLE_SETS[proto][f]} { type ${addrType(f)}; flags dynamic, timeout; timeout ${METER_IDLE_S}s; size ${SAMPLE_SIZE}; counter; }`);
  }
  for (const svc of spec.services) body.push(...serviceSets(spec, svc));

  body.push('  chain prerouting {', '    type filter hook prerouting priority -350; policy accept;', `    ${scope(spec)} jump edge`, '  }');
  body.push('  chain edge {');
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.management[f]} accept`);
  // the source sample: always on, so that a flood shorter than one reading still names its sources
  // (listed only while an attack goes on and when it ends)
  body.push(...sampleRules());
  for (const k of FLAG_CLASSES) body.push(`    ${k.match} counter name ${k.counter} drop`);
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.allow[f]} counter name ${COUNTERS.allowlisted} return`);
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.manual[f]} counter name ${COUNTERS.blockedManual} drop`);
  // the management API on this host passes the meters' blocklist: an operator a meter caught (say,
  // behind one NAT with an attacker) keeps the API; a hand-made block still applies
  if (spec.api) {
    const dst = spec.api.address ? `${spec.api.family === 4 ? 'ip' : 'ip6'} daddr ${spec.api.address} ` : '';
    body.push(`    ${dst}fib daddr type local tcp dport ${spec.api.port} return`);
  }
  for (const f of [4, 6] as const) {
    body.push(`    meta l4proto tcp ${saddr(f)} @${SETS.block[f]} counter name ${COUNTERS.blockedMeterTcp} drop`);
    body.push(`    ${saddr(f)} @${SETS.block[f]} counter name ${COUNTERS.blockedMeterOther} drop`);
  }
  for (const svc of spec.services) {
    if (svc.protocol === 'tcp' && svc.syn === 'synproxy') for (const f of familiesOf(svc)) body.push(`    ${match(svc, f)} tcp flags & (syn|ack) == syn notrack`);
  }
  body.push('  }');

  const proxied = spec.services.filter((s) => s.proxy);
  if (proxied.length > 0) {
    // TPROXY: the proxied services' packets go to the proxy's listener (which dials the original
    // destination), after the edge chain's drops; the mark routes them to this host
    const mark = `0x${SHIELD_MARK.toString(16)}`;
    body.push('  chain divert {', '    type filter hook prerouting priority mangle; policy accept;');
    // host mode: only what is addressed to this host (a service without an address matches any)
    const local = spec.mode === 'host' ? ' fib daddr type local' : '';
    for (const svc of proxied) for (const f of familiesOf(svc)) body.push(`    ${scope(spec)}${local} ${match(svc, f)} tproxy ${f === 4 ? 'ip' : 'ip6'} to :${ports.get(svc.name)?.[f] ?? 0} meta mark set ${mark} accept`);
    body.push('  }');
  }
  body.push('  chain guard {', `    type filter hook ${spec.mode === 'router' ? 'forward' : 'input'} priority filter; policy accept;`, `    ${scope(spec)} jump ${PROTECT_CHAIN}`, '  }');
  // in router mode diverted packets are delivered here (input), not forwarded: guard them there too
  if (spec.mode === 'router' && proxied.length > 0) body.push('  chain guard_local {', '    type filter hook input priority filter; policy accept;', `    ${scope(spec)} jump ${PROTECT_CHAIN}`, '  }');
  body.push(`  chain ${PROTECT_CHAIN} {`, ...protectRules(spec, tight), '  }');
  // the SYNs synproxy sends the servers (the client's address as their source, not this host's)
  const synproxied = synproxyServices(spec);
  if (synproxied.length > 0) {
    for (const f of [4, 6] as const) body.push(`  ct timeout ${CLOSED_TIMEOUTS[f]} { protocol tcp; l3proto ${f === 4 ? 'ip' : 'ip6'}; policy = { time_wait: ${CLOSED_LINGER_S}, close: ${CLOSED_LINGER_S} }; }`);
    body.push('  chain synproxied {', '    type filter hook output priority filter; policy accept;');
    for (const svc of synproxied) for (const f of familiesOf(svc)) body.push(`    ${match(svc, f)} tcp flags & (syn|ack) == syn ct state new fib saddr type != local jump ${SYNPROXIED_CHAIN}`);
    // synproxy's own ACK that completes the server's handshake (the only ACK to a synproxy service
    // with a foreign source that leaves through this hook: forwarded packets never do) carries a
    // TSEcr that synproxy shifted twice by its timestamp offset. Linux >= 6.15 rejects it
    // (TcpExtTSEcrRejected) and answers with a bare ACK whose TSval is that of a millisecond later;
    // the client echoes that, outside the SYN-ACK's, so its request is rejected too until the
    // server resends its SYN-ACK a second later (lab: 1.6 s for 3 % of the connections under a SYN
    // flood, up to 11 of 200 past a 3 s deadline). Without it, the client's first segment completes
    // the handshake with the right TSEcr. A speaks-first service has no timestamps (the ACK is
    // fine, and the only one it gets)
    for (const svc of synproxied) if (!svc.speaksFirst) for (const f of familiesOf(svc)) body.push(`    ${match(svc, f)} tcp flags & (fin|syn|rst|ack) == ack fib saddr type != local counter name ${COUNTERS.synproxyAckHeld} drop`);
    body.push('  }', `  chain ${SYNPROXIED_CHAIN} {`, ...synproxiedRules(spec, tight), '  }');
  }
  return body;
}

/** The comment lines at the top of the printed ruleset. */
export function shieldComments(spec: ShieldSpec): string[] {
  return [
    `edgeward shield (${spec.mode} mode): applied as one transaction, removed with \`edgeward shield remove\``,
    ...spec.services.map((s) => `service ${s.name}: ${s.protocol} ${s.address ?? '*'} port ${s.ports[0] === s.ports[1] ? s.ports[0] : s.ports.join('-')}, ${s.rate}/s per source${s.protocol === 'tcp' ? `, ${s.conns} connections per source, SYN: ${s.syn}${s.speaksFirst && s.syn === 'synproxy' ? ' (no timestamps: the server speaks first)' : ''}${s.proxy ? `, through the L4 proxy${s.proxyProtocol ? ' (PROXY v2 to the server)' : ''}` : ''}` : ''}`),
    ...(spec.services.some((s) => s.proxy)
      ? [`proxied services: TPROXY to the proxy's port (chosen when edgeward starts; 0 in \`shield print\`), mark 0x${SHIELD_MARK.toString(16)}; policy routing: ip rule fwmark 0x${SHIELD_MARK.toString(16)} lookup ${SHIELD_ROUTE_TABLE}; local default dev lo table ${SHIELD_ROUTE_TABLE}`]
      : []),
  ];
}
