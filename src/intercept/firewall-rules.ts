// The interception firewall's rules, rendered from a spec (pure): the body of edgeward's nftables
// table (TPROXY to the intercept listener, the socket-match fast path, local destinations skipped)
// and the policy routing TPROXY needs (`ip rule fwmark MARK lookup TABLE`, `local default dev lo
// table TABLE`), as the nft script and ip commands that `print` shows and `apply` runs.
import { EDGEWARD_ROUTE_PROTOCOL, fwmarkRuleArgv, localRouteArgv, type IpFamily } from '../kernel/iproute.js';
import { renderTableRemoval, renderTableScript, type NftTable } from '../kernel/nft.js';
import { resolveOrThrow, type FirewallSpec, type ResolvedFirewallSpec } from './firewall-spec.js';

/** The nftables table (family inet) that edgeward owns; nothing else is ever touched. */
export const NFT_TABLE = 'edgeward_intercept';
/** The same, as kernel/nft addresses it. */
export const INTERCEPT_TABLE: NftTable = { family: 'inet', name: NFT_TABLE };
/** Routing protocol number ("proto 101", 0x65 = "e") tagging the ip rules and routes edgeward adds. */
export const ROUTE_PROTOCOL = EDGEWARD_ROUTE_PROTOCOL;

const hex = (n: number): string => `0x${n.toString(16)}`;

function set(name: string, type: string, elements: readonly string[], interval: boolean): string[] {
  const lines = [`\tset ${name} {`, `\t\ttype ${type}`];
  if (interval) lines.push('\t\tflags interval', '\t\tauto-merge');
  if (elements.length > 0) lines.push(`\t\telements = { ${elements.join(', ')} }`);
  lines.push('\t}');
  return lines;
}

/** The "#" lines that head the script: what it does and how it is loaded. */
export function rulesetComments(s: ResolvedFirewallSpec): string[] {
  const mark = hex(s.mark);
  const families = s.v4 && s.v6 ? 'IPv4 and IPv6' : s.v4 ? 'IPv4' : 'IPv6';
  return [
    `edgeward interception firewall: ${families} TCP arriving on ${s.interfaces.join(', ')} -> TPROXY to port ${s.port}, mark ${mark}.`,
    `Policy routing (added by edgeward intercept firewall apply): ip rule fwmark ${mark} lookup ${s.table}; local default dev lo table ${s.table}.`,
    'Load with `nft -f`: the first two lines make reloading replace the table in the same transaction.',
  ];
}

/** The lines inside `table inet edgeward_intercept { ... }`: its sets and its prerouting chain. */
export function rulesetBody(s: ResolvedFirewallSpec): string[] {
  const mark = hex(s.mark);
  const lines: string[] = [];
  const sets: string[][] = [set('intercept_ifaces', 'ifname', s.interfaces.map((i) => `"${i}"`), false)];
  if (s.excludes4.length > 0) sets.push(set('excluded_v4', 'ipv4_addr', s.excludes4, true));
  if (s.excludes6.length > 0) sets.push(set('excluded_v6', 'ipv6_addr', s.excludes6, true));
  if (s.restrictSources && s.v4 && s.sources4.length > 0) sets.push(set('sources_v4', 'ipv4_addr', s.sources4, true));
  if (s.restrictSources && s.v6 && s.sources6.length > 0) sets.push(set('sources_v6', 'ipv6_addr', s.sources6, true));
  if (s.dports.length > 0) sets.push(set('dports', 'inet_service', s.dports.map(String), false));
  for (const block of sets) lines.push(...block, '');

  const onlyFamily = s.v4 && s.v6 ? '' : s.v4 ? 'meta nfproto ipv4 ' : 'meta nfproto ipv6 ';
  const rules: string[] = [
    'type filter hook prerouting priority mangle; policy accept;',
    // on every interface: replies to --transparent-source connections come in on the WAN side
    `${onlyFamily}meta l4proto tcp socket transparent 1 meta mark set ${mark} accept comment "fast path: packets of open transparent sockets"`,
    'iifname != @intercept_ifaces return',
    'meta l4proto != tcp return',
    'fib daddr type local return',
  ];
  if (s.excludes4.length > 0) rules.push('ip daddr @excluded_v4 return');
  if (s.excludes6.length > 0) rules.push('ip6 daddr @excluded_v6 return');
  if (s.restrictSources) {
    if (s.v4) rules.push(s.sources4.length > 0 ? 'ip saddr != @sources_v4 return' : 'meta nfproto ipv4 return');
    if (s.v6) rules.push(s.sources6.length > 0 ? 'ip6 saddr != @sources_v6 return' : 'meta nfproto ipv6 return');
  }
  if (s.dports.length > 0) rules.push('tcp dport != @dports return');
  if (s.v4) rules.push(`meta nfproto ipv4 meta l4proto tcp tproxy ip to :${s.port} meta mark set ${mark} accept`);
  if (s.v6) rules.push(`meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :${s.port} meta mark set ${mark} accept`);
  lines.push('\tchain prerouting {', ...rules.map((r) => `\t\t${r}`), '\t}');
  return lines;
}

/**
 * The nft script of the interception table. It first declares and deletes the table, so loading it
 * with `nft -f` replaces any earlier version in one transaction (idempotent, atomic).
 */
export function renderRuleset(spec: FirewallSpec): string {
  const s = resolveOrThrow(spec);
  return renderTableScript(INTERCEPT_TABLE, rulesetBody(s), rulesetComments(s));
}

/** The nft script that deletes the table if it is there (and is a no-op otherwise), in one transaction. */
export function renderRemoval(): string {
  return renderTableRemoval(INTERCEPT_TABLE);
}

/** The families a resolved spec covers, in the order they are set up. */
export function specFamilies(s: { v4: boolean; v6: boolean }): IpFamily[] {
  return [...(s.v4 ? (['ipv4'] as const) : []), ...(s.v6 ? (['ipv6'] as const) : [])];
}

/** The ip rule / route commands (argv lists) that set up, or take down, the policy routing of `spec`. */
export function routingCommands(spec: FirewallSpec, action: 'apply' | 'remove'): string[][] {
  const s = resolveOrThrow(spec);
  const verb = action === 'apply' ? 'add' : 'del';
  return specFamilies(s).flatMap((f) => [fwmarkRuleArgv(f, verb, s.mark, s.table), localRouteArgv(f, verb, s.table)]);
}
