// Policy routing through iproute2: the fwmark rules ("ip rule ... fwmark M lookup T") and the local
// routes ("ip route ... local default dev lo table T") that TPROXY needs. Everything edgeward adds
// carries its routing protocol number (EDGEWARD_ROUTE_PROTOCOL), so listing and removal find exactly
// what edgeward created and nothing else. Lists are read as JSON with numeric names (`ip -N -j`).
import { EdgewardError } from '../core/errors.js';
import { type CommandRunner, deniedPermission, describeArgv, failureDetail, type RunResult, succeeded } from './command.js';

/** Routing protocol number ("proto 101", 0x65 = "e") tagging the ip rules and routes edgeward adds. */
export const EDGEWARD_ROUTE_PROTOCOL = 101;

export type IpFamily = 'ipv4' | 'ipv6';

export type IpRouteErrorCode = 'ip_missing' | 'permission' | 'family_unavailable' | 'timeout' | 'ip_failed';

/** An ip command that failed; `message` says which command and what to do about it. */
export class IpRouteError extends EdgewardError<IpRouteErrorCode> {
  constructor(
    code: IpRouteErrorCode,
    message: string,
    /** the command as a shell line, when one ran */
    readonly command?: string,
  ) {
    super(code, message);
  }
}

/** A plain "from all fwmark M lookup T" rule as edgeward sees it. */
export interface FwmarkRule {
  family: IpFamily;
  priority: number;
  mark: number;
  table: number;
  /** carries edgeward's routing protocol number: edgeward added it */
  ours: boolean;
}

/** A route edgeward added (any table), or a "local default dev lo" route in a table asked about. */
export interface LocalRoute {
  family: IpFamily;
  table: number;
  /** as ip prints it: "default" or a prefix */
  dst: string;
  ours: boolean;
}

const flag = (f: IpFamily): '-4' | '-6' => (f === 'ipv4' ? '-4' : '-6');
const anyDst = (f: IpFamily): string => (f === 'ipv4' ? '0.0.0.0/0' : '::/0');
const hex = (n: number): string => `0x${n.toString(16)}`;

/** Turns a failed ip command into an IpRouteError that says what to do: the one place this mapping lives. */
export function ipFailure(argv: readonly string[], r: RunResult): IpRouteError {
  const cmd = describeArgv(argv);
  const detail = failureDetail(r);
  if (r.error === 'ENOENT') return new IpRouteError('ip_missing', `${argv[0] ?? 'ip'} not found: install iproute2 (e.g. apt install iproute2) for the policy routing`);
  if (r.error === 'ETIMEDOUT') return new IpRouteError('timeout', `${cmd}: did not finish in time`, cmd);
  if (r.error !== undefined) return new IpRouteError('ip_failed', `${cmd}: cannot run it (${r.error}): ${detail}`, cmd);
  if (deniedPermission(r)) return new IpRouteError('permission', `${cmd}: ${detail}: changing the policy routing needs root (CAP_NET_ADMIN)`, cmd);
  if (/Address family not supported/i.test(r.stderr)) return new IpRouteError('family_unavailable', `${cmd}: ${detail}: IPv6 is disabled on this machine; use --family ipv4`, cmd);
  if (/Nexthop device is not up/i.test(r.stderr)) return new IpRouteError('ip_failed', `${cmd}: ${detail}: the loopback interface is down (ip link set lo up)`, cmd);
  return new IpRouteError('ip_failed', `${cmd}: ${detail}`, cmd);
}

/** Runs an ip command that must succeed; resolves to its shell line, for a list of changes. */
async function must(run: CommandRunner, argv: readonly string[]): Promise<string> {
  const r = await run(argv);
  if (!succeeded(r)) throw ipFailure(argv, r);
  return describeArgv(argv);
}

/** argv of "ip -4|-6 rule add|del fwmark M lookup T protocol 101" (with the priority when given, to delete one rule exactly). */
export function fwmarkRuleArgv(family: IpFamily, verb: 'add' | 'del', mark: number, table: number, priority?: number): string[] {
  const prio = priority === undefined ? [] : ['priority', String(priority)];
  return ['ip', flag(family), 'rule', verb, ...prio, 'fwmark', hex(mark), 'lookup', String(table), 'protocol', String(EDGEWARD_ROUTE_PROTOCOL)];
}

/** argv of "ip -4|-6 route add|del local DST dev lo table T proto 101" (DST: any address of the family by default). */
export function localRouteArgv(family: IpFamily, verb: 'add' | 'del', table: number, dst: string = anyDst(family)): string[] {
  return ['ip', flag(family), 'route', verb, 'local', dst === 'default' ? anyDst(family) : dst, 'dev', 'lo', 'table', String(table), 'proto', String(EDGEWARD_ROUTE_PROTOCOL)];
}

// `ip -N -j` output: numbers stay numbers (no rt_tables / rt_protos names)
interface IpRuleJson {
  priority?: number;
  src?: string;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  protocol?: string;
  /** any other key is a selector or action (iif, dst, not, goto, ...): not a plain fwmark rule */
  [k: string]: unknown;
}

interface IpRouteJson {
  type?: string;
  dst?: string;
  dev?: string;
  table?: string;
  protocol?: string;
  [k: string]: unknown;
}

function parseJsonList<T>(argv: readonly string[], r: RunResult): T[] {
  const text = r.stdout.trim();
  if (text === '') return [];
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v)) return v as T[];
  } catch {
    /* reported below */
  }
  throw new IpRouteError('ip_failed', `${describeArgv(argv)}: unexpected output (not a JSON list): ${text.slice(0, 200)}`, describeArgv(argv));
}

const familyOff = (r: RunResult): boolean => r.code !== 0 && /Address family not supported/i.test(r.stderr);

/**
 * The rules that send marked packets to a table: plain "from all fwmark M lookup T" (exact mark, no
 * other selector), edgeward's and others'. null when the family is disabled on this machine.
 */
export async function listFwmarkRules(family: IpFamily, run: CommandRunner): Promise<FwmarkRule[] | null> {
  const argv = ['ip', '-N', '-j', flag(family), 'rule', 'show'];
  const r = await run(argv);
  if (familyOff(r)) return null;
  if (!succeeded(r)) throw ipFailure(argv, r);
  const out: FwmarkRule[] = [];
  for (const j of parseJsonList<IpRuleJson>(argv, r)) {
    if (j.fwmark === undefined || j.table === undefined || j.priority === undefined) continue;
    const selectors = Object.keys(j).filter((k) => !['priority', 'src', 'fwmark', 'fwmask', 'table', 'protocol', 'flags'].includes(k));
    if (selectors.length > 0 || (j.src !== undefined && j.src !== 'all')) continue;
    if (j.fwmask !== undefined && Number(j.fwmask) !== 0xffffffff) continue;
    const mark = Number(j.fwmark);
    const table = Number(j.table);
    if (!Number.isInteger(mark) || !Number.isInteger(table)) continue;
    out.push({ family, priority: j.priority, mark, table, ours: j.protocol === String(EDGEWARD_ROUTE_PROTOCOL) });
  }
  return out;
}

/**
 * The routes edgeward added (any table), plus, when `table` is given, any "local default dev lo"
 * route in that table that is not edgeward's. null when the family is disabled on this machine.
 */
export async function listLocalRoutes(family: IpFamily, run: CommandRunner, table?: number): Promise<LocalRoute[] | null> {
  const ours: LocalRoute[] = [];
  const argvOurs = ['ip', '-N', '-j', flag(family), 'route', 'show', 'table', 'all', 'proto', String(EDGEWARD_ROUTE_PROTOCOL)];
  const r = await run(argvOurs);
  if (familyOff(r)) return null;
  if (!succeeded(r)) throw ipFailure(argvOurs, r);
  for (const j of parseJsonList<IpRouteJson>(argvOurs, r)) {
    if (j.dst === undefined || j.table === undefined) continue;
    ours.push({ family, table: Number(j.table), dst: j.dst, ours: true });
  }
  if (table === undefined) return ours;
  const argv = ['ip', '-N', '-j', flag(family), 'route', 'show', 'table', String(table)];
  const t = await run(argv);
  if (t.code !== 0 && t.error === undefined && /table does not exist/i.test(t.stderr)) return ours;
  if (!succeeded(t)) throw ipFailure(argv, t);
  const others: LocalRoute[] = [];
  for (const j of parseJsonList<IpRouteJson>(argv, t)) {
    if (j.type !== 'local' || j.dst !== 'default' || j.dev !== 'lo') continue;
    if (j.protocol === String(EDGEWARD_ROUTE_PROTOCOL)) continue; // already in `ours`
    others.push({ family, table, dst: j.dst, ours: false });
  }
  return [...ours, ...others];
}

/** Adds "fwmark M lookup T", tagged as edgeward's; resolves to the command run. */
export function addFwmarkRule(family: IpFamily, mark: number, table: number, run: CommandRunner): Promise<string> {
  return must(run, fwmarkRuleArgv(family, 'add', mark, table));
}

/** Deletes exactly this rule (by priority, mark, table and edgeward's tag); resolves to the command run. */
export function deleteFwmarkRule(rule: FwmarkRule, run: CommandRunner): Promise<string> {
  return must(run, fwmarkRuleArgv(rule.family, 'del', rule.mark, rule.table, rule.priority));
}

/** Adds "local default dev lo table T", tagged as edgeward's; resolves to the command run. */
export function addLocalRoute(family: IpFamily, table: number, run: CommandRunner): Promise<string> {
  return must(run, localRouteArgv(family, 'add', table));
}

/** Deletes one of edgeward's local routes; resolves to the command run. */
export function deleteLocalRoute(route: LocalRoute, run: CommandRunner): Promise<string> {
  return must(run, localRouteArgv(route.family, 'del', route.table, route.dst));
}
