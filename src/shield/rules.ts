// The shield's packet layer as one nftables table (`inet edgeward_shield`), rendered from a checked
// spec (config.ts). The kernel does the per-packet work; this module only writes the rules.
//
//   prerouting (priority -350, before conntrack), for packets arriving on the shield's interfaces:
//     management sources pass; TCP flag sanity (SYN+FIN+ACK before SYN+FIN, which also matches it;
//     XMAS before FIN-without-ACK), each class with its own named counter, dropped; allowlisted
//     sources pass; the hand-made and the meters' blocklists drop; SYNs to synproxy services are
//     left untracked (synproxy answers them).
//   guard (input in host mode, forward in router mode; filter priority), same interfaces:
//     management and allowlisted sources pass; per service: a per-source rate meter whose
//     offenders go on the blocklist (with a timeout), synproxy where chosen, a per-source
//     connection count (conntrack), then the global cap, shared by every service (a named limit).
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

/** Named counters besides the flag classes and the per-service ones. */
export const COUNTERS = {
  blockedManual: 'blocked_manual',
  blockedMeter: 'blocked_meter',
  globalCap: 'global_cap',
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

function serviceRules(svc: ShieldService): string[] {
  const c = serviceCounters(svc.name);
  const out: string[] = [];
  for (const f of familiesOf(svc)) {
    const m = match(svc, f);
    const meter = `update @rate_${svc.name}_v${f} { ${saddr(f)} limit rate over ${svc.rate}/second burst ${svc.rate} packets } add @${SETS.block[f]} { ${saddr(f)} } counter name ${c.overRate} drop`;
    if (svc.protocol === 'udp') {
      out.push(`    ${m} ${meter}`);
      out.push(`    ${m} limit name "${GLOBAL_LIMIT}" counter name ${COUNTERS.globalCap} drop`);
      out.push(`    ${m} counter name ${c.passed}`);
      continue;
    }
    if (svc.syn === 'synproxy') {
      // SYNs arrive untracked (prerouting): meter them, cap them, and let synproxy answer
      const syn = `${m} tcp flags & (syn|ack) == syn`;
      out.push(`    ${syn} ${meter}`);
      out.push(`    ${syn} limit name "${GLOBAL_LIMIT}" counter name ${COUNTERS.globalCap} drop`);
      // synproxy ends the rule (it takes the packet): the counter goes before it
      out.push(`    ${m} ct state invalid,untracked counter name ${c.synproxy} synproxy mss ${MSS[f]} wscale ${WSCALE}${svc.speaksFirst ? '' : ' timestamp'} sack-perm`);
      out.push(`    ${m} ct state invalid drop`);
      out.push(`    ${m} ct state new add @conns_${svc.name}_v${f} { ${saddr(f)} ct count over ${svc.conns} } counter name ${c.overConns} drop`);
      out.push(`    ${m} ct state new counter name ${c.passed}`);
      continue;
    }
    out.push(`    ${m} ct state new ${meter}`);
    out.push(`    ${m} ct state new add @conns_${svc.name}_v${f} { ${saddr(f)} ct count over ${svc.conns} } counter name ${c.overConns} drop`);
    out.push(`    ${m} ct state new limit name "${GLOBAL_LIMIT}" counter name ${COUNTERS.globalCap} drop`);
    out.push(`    ${m} ct state new counter name ${c.passed}`);
  }
  return out;
}

/** The table body (the lines inside `table inet edgeward_shield { ... }`). */
export function renderShieldBody(spec: ShieldSpec): string[] {
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
  }
  for (const svc of spec.services) body.push(...serviceSets(spec, svc));

  body.push('  chain prerouting {', '    type filter hook prerouting priority -350; policy accept;', `    ${scope(spec)} jump edge`, '  }');
  body.push('  chain edge {');
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.management[f]} accept`);
  for (const k of FLAG_CLASSES) body.push(`    ${k.match} counter name ${k.counter} drop`);
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.allow[f]} return`);
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.manual[f]} counter name ${COUNTERS.blockedManual} drop`);
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.block[f]} counter name ${COUNTERS.blockedMeter} drop`);
  for (const svc of spec.services) {
    if (svc.protocol === 'tcp' && svc.syn === 'synproxy') for (const f of familiesOf(svc)) body.push(`    ${match(svc, f)} tcp flags & (syn|ack) == syn notrack`);
  }
  body.push('  }');

  body.push('  chain guard {', `    type filter hook ${spec.mode === 'router' ? 'forward' : 'input'} priority filter; policy accept;`, `    ${scope(spec)} jump protect`, '  }');
  body.push('  chain protect {');
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.management[f]} accept`);
  for (const f of [4, 6] as const) body.push(`    ${saddr(f)} @${SETS.allow[f]} accept`);
  for (const svc of spec.services) body.push(...serviceRules(svc));
  body.push('  }');
  return body;
}

/** The comment lines at the top of the printed ruleset. */
export function shieldComments(spec: ShieldSpec): string[] {
  return [
    `edgeward shield (${spec.mode} mode): applied as one transaction, removed with \`edgeward shield remove\``,
    ...spec.services.map((s) => `service ${s.name}: ${s.protocol} ${s.address ?? '*'} port ${s.ports[0] === s.ports[1] ? s.ports[0] : s.ports.join('-')}, ${s.rate}/s per source${s.protocol === 'tcp' ? `, ${s.conns} connections per source, SYN: ${s.syn}${s.speaksFirst && s.syn === 'synproxy' ? ' (no timestamps: the server speaks first)' : ''}` : ''}`),
  ];
}
