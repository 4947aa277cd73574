// The interception firewall in the kernel: apply, remove and status of edgeward's nftables table
// (kernel/nft) and the policy routing TPROXY needs (kernel/iproute), for a spec (firewall-spec.ts)
// rendered by firewall-rules.ts. Ownership is explicit: the nft table has edgeward's name, and every
// ip rule and route edgeward adds carries its routing protocol number (ROUTE_PROTOCOL), so removal
// finds exactly what edgeward created and nothing else. This module is the intercept firewall's
// public surface: it re-exports what callers need from the spec and the rules.
import { type CommandRunner, defaultRunner } from '../kernel/command.js';
import {
  addFwmarkRule,
  addLocalRoute,
  deleteFwmarkRule,
  deleteLocalRoute,
  IpRouteError,
  listFwmarkRules,
  listLocalRoutes,
  type FwmarkRule,
  type IpFamily,
  type LocalRoute,
} from '../kernel/iproute.js';
import { applyTable, NftError, removeTable, tableExists } from '../kernel/nft.js';
import { DEFAULT_MARK, DEFAULT_TABLE, FirewallError, resolveOrThrow, type FirewallSpec } from './firewall-spec.js';
import { INTERCEPT_TABLE, NFT_TABLE, rulesetBody, rulesetComments } from './firewall-rules.js';

export type { LocalRoute } from '../kernel/iproute.js';
export {
  DEFAULT_MARK,
  DEFAULT_TABLE,
  FirewallError,
  MAX_IFNAME,
  MAX_LIST,
  resolveFirewallSpec,
  validateFirewallSpec,
  type FirewallErrorCode,
  type FirewallFamily,
  type FirewallFlag,
  type FirewallSpec,
  type FirewallSpecError,
  type FirewallSpecErrorCode,
  type ResolvedFirewallSpec,
} from './firewall-spec.js';
export { INTERCEPT_TABLE, NFT_TABLE, renderRemoval, renderRuleset, ROUTE_PROTOCOL, routingCommands } from './firewall-rules.js';

/** An ip rule as the firewall reports it (a plain fwmark rule). */
export type PolicyRule = FwmarkRule;

/** A kernel-module error as a FirewallError with the same code, and the intercept-specific hint. */
function asFirewallError(e: unknown): unknown {
  if (e instanceof NftError) {
    switch (e.code) {
      case 'nft_missing':
        return new FirewallError('nft_missing', `${e.message} to manage the interception firewall`);
      case 'permission':
        return new FirewallError('permission', `${e.command ?? 'nft'}: ${e.detail ?? ''}: changing the firewall and policy routing needs root (CAP_NET_ADMIN)`);
      case 'kernel_unsupported':
        return new FirewallError(
          'kernel_unsupported',
          `${e.command ?? 'nft'}: the kernel refused the ruleset (${e.detail ?? ''}): it needs nf_tables with nft_tproxy, nft_socket and nft_fib_inet (modprobe nft_tproxy nft_socket nft_fib_inet)`,
        );
      case 'timeout':
        return new FirewallError('timeout', e.message);
      default:
        return new FirewallError('nft_failed', e.message);
    }
  }
  if (e instanceof IpRouteError) return new FirewallError(e.code, e.message);
  return e;
}

/** Runs a kernel step, turning the kernel modules' errors into FirewallErrors. */
async function step<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw asFirewallError(e);
  }
}

const FAMILIES: readonly IpFamily[] = ['ipv4', 'ipv6'];

export interface FirewallResult {
  /** what was done, one line each ("nft: loaded table inet edgeward_intercept", "ip -4 rule add ...") */
  changes: string[];
}

/**
 * Applies `spec`: policy routing first (inert without marks), then the nft table in one transaction.
 * Idempotent: an existing equivalent ip rule or route is not added again; edgeward's own rules and
 * routes left from an apply with another --mark/--table/--family are removed. If a step fails after
 * this call changed something, everything of edgeward's is removed again before the error is thrown,
 * so no half-applied state remains.
 */
export async function applyFirewall(spec: FirewallSpec, run: CommandRunner = defaultRunner): Promise<FirewallResult> {
  const s = resolveOrThrow(spec);
  const changes: string[] = [];
  try {
    for (const f of FAMILIES) {
      const wanted = f === 'ipv4' ? s.v4 : s.v6;
      const rules = await step(() => listFwmarkRules(f, run));
      if (rules === null) {
        if (wanted) throw new FirewallError('family_unavailable', `ip ${f === 'ipv4' ? '-4' : '-6'} rule show: IPv6 is disabled on this machine; use --family ipv4`);
        continue;
      }
      for (const rule of rules) {
        if (!rule.ours || (wanted && rule.mark === s.mark && rule.table === s.table)) continue;
        changes.push(await step(() => deleteFwmarkRule(rule, run)));
      }
      const routes = (await step(() => listLocalRoutes(f, run, wanted ? s.table : undefined))) ?? [];
      for (const route of routes) {
        if (!route.ours || (wanted && route.table === s.table && route.dst === 'default')) continue;
        changes.push(await step(() => deleteLocalRoute(route, run)));
      }
      if (!wanted) continue;
      if (!rules.some((r) => r.mark === s.mark && r.table === s.table)) changes.push(await step(() => addFwmarkRule(f, s.mark, s.table, run)));
      if (!routes.some((r) => r.table === s.table && r.dst === 'default')) changes.push(await step(() => addLocalRoute(f, s.table, run)));
    }
    await step(() => applyTable(INTERCEPT_TABLE, rulesetBody(s), { comments: rulesetComments(s), run }));
    changes.push(`nft -f -: loaded table inet ${NFT_TABLE} (TPROXY to port ${s.port} on ${s.interfaces.join(', ')})`);
    return { changes };
  } catch (e) {
    if (changes.length > 0) await removeFirewall(run).catch(() => undefined);
    throw e;
  }
}

/**
 * Removes what edgeward added: its nft table (when present) and the ip rules and routes carrying its
 * routing protocol number, whatever --mark/--table they were made with. Nothing else is touched;
 * with nothing to remove it changes nothing and succeeds.
 */
export async function removeFirewall(run: CommandRunner = defaultRunner): Promise<FirewallResult> {
  const changes: string[] = [];
  if (await step(() => removeTable(INTERCEPT_TABLE, run))) changes.push(`nft delete table inet ${NFT_TABLE}`);
  for (const f of FAMILIES) {
    for (const rule of (await step(() => listFwmarkRules(f, run))) ?? []) {
      if (rule.ours) changes.push(await step(() => deleteFwmarkRule(rule, run)));
    }
    for (const route of (await step(() => listLocalRoutes(f, run))) ?? []) changes.push(await step(() => deleteLocalRoute(route, run)));
  }
  return { changes };
}

export interface FirewallStatus {
  /** table inet edgeward_intercept is loaded */
  table: boolean;
  /** fwmark rules: edgeward's own, and others that send the spec's mark to the spec's table */
  rules: PolicyRule[];
  /** edgeward's routes, and "local default dev lo" routes in the spec's table */
  routes: LocalRoute[];
  /** the table is loaded and every family of the spec has its rule and route */
  applied: boolean;
}

/** What of the interception firewall is in place, read from the kernel. */
export async function firewallStatus(spec: Partial<FirewallSpec> = {}, run: CommandRunner = defaultRunner): Promise<FirewallStatus> {
  const mark = spec.mark ?? DEFAULT_MARK;
  const table = spec.table ?? DEFAULT_TABLE;
  const family = spec.family ?? 'both';
  const loaded = await step(() => tableExists(INTERCEPT_TABLE, run));
  const rules: PolicyRule[] = [];
  const routes: LocalRoute[] = [];
  let complete = loaded;
  for (const f of FAMILIES) {
    const wanted = f === 'ipv4' ? family !== 'ipv6' : family !== 'ipv4';
    const r = (await step(() => listFwmarkRules(f, run))) ?? [];
    const rt = (await step(() => listLocalRoutes(f, run, table))) ?? [];
    rules.push(...r.filter((x) => x.ours || (x.mark === mark && x.table === table)));
    routes.push(...rt);
    if (wanted && !(r.some((x) => x.mark === mark && x.table === table) && rt.some((x) => x.table === table && x.dst === 'default'))) complete = false;
  }
  return { table: loaded, rules, routes, applied: complete };
}
