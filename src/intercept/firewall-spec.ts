// The interception firewall's spec: what an operator asks for (port, interfaces, sources, excludes,
// ports, mark, table, family), validated with an error per problem that names its flag, and
// resolved (defaults filled in, CIDRs canonical and split by family, no duplicates). Also the error
// type every firewall operation throws.
import { EdgewardError } from '../core/errors.js';
import { formatCidr, parseCidr } from '../net/address.js';

/** Default packet mark of intercepted packets: 0x6577 is "ew". */
export const DEFAULT_MARK = 0x6577;
/** Default routing table of the local-delivery route (0x6577). */
export const DEFAULT_TABLE = 25975;
/** Linux IFNAMSIZ - 1: the longest interface name. */
export const MAX_IFNAME = 15;
/** Upper bound on each list of the spec (interfaces, sources, excludes, dports). */
export const MAX_LIST = 10_000;

export type FirewallFamily = 'ipv4' | 'ipv6' | 'both';

export interface FirewallSpec {
  /** the TPROXY listener's port (edgeward start --intercept PORT) */
  port: number;
  /** intercept TCP connections arriving on these interfaces */
  interfaces: string[];
  /** when not empty: only intercept clients inside these blocks (IPv4 and IPv6) */
  sources: string[];
  /** never intercept connections to these blocks */
  excludes: string[];
  /** when not empty: only intercept connections to these destination ports */
  dports: number[];
  /** packet mark of intercepted packets (default DEFAULT_MARK) */
  mark?: number;
  /** routing table of the local-delivery route (default DEFAULT_TABLE) */
  table?: number;
  /** default 'both' */
  family?: FirewallFamily;
}

export type FirewallFlag = '--port' | '--interface' | '--source' | '--exclude' | '--dport' | '--mark' | '--table' | '--family';

export type FirewallSpecErrorCode =
  | 'invalid_port'
  | 'invalid_interface'
  | 'invalid_source'
  | 'invalid_exclude'
  | 'invalid_dport'
  | 'invalid_mark'
  | 'invalid_table'
  | 'invalid_family';

/** One thing wrong with a FirewallSpec; `message` starts with the flag. */
export interface FirewallSpecError {
  code: FirewallSpecErrorCode;
  flag: FirewallFlag;
  message: string;
}

export type FirewallErrorCode =
  | 'invalid_spec'
  | 'nft_missing'
  | 'ip_missing'
  | 'permission'
  | 'kernel_unsupported'
  | 'family_unavailable'
  | 'timeout'
  | 'nft_failed'
  | 'ip_failed';

/** A firewall operation that failed; the message says which command and what to do about it. */
export class FirewallError extends EdgewardError<FirewallErrorCode> {
  constructor(
    code: FirewallErrorCode,
    message: string,
    /** the spec's problems, for code 'invalid_spec' */
    readonly specErrors: FirewallSpecError[] = [],
  ) {
    super(code, message);
  }
}

/** A spec after validation: defaults filled in, CIDRs canonical and split by family, no duplicates. */
export interface ResolvedFirewallSpec {
  port: number;
  interfaces: string[];
  sources4: string[];
  sources6: string[];
  /** true when --source was given at all (an empty family list then means "none of that family") */
  restrictSources: boolean;
  excludes4: string[];
  excludes6: string[];
  dports: number[];
  mark: number;
  table: number;
  v4: boolean;
  v6: boolean;
}

// ---------------------------------------------------------------------------------------------
// Validation

const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const RESERVED_TABLES = new Map([
  [253, 'default'],
  [254, 'main'],
  [255, 'local'],
]);

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 0xffffffff;
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

/** Validates and resolves a spec; errors name the flag they are about. */
export function resolveFirewallSpec(spec: FirewallSpec): ResolvedFirewallSpec | FirewallSpecError[] {
  const errors: FirewallSpecError[] = [];
  const err = (code: FirewallSpecErrorCode, flag: FirewallFlag, text: string): void => {
    errors.push({ code, flag, message: `${flag}: ${text}` });
  };
  const family = spec.family ?? 'both';
  if (family !== 'ipv4' && family !== 'ipv6' && family !== 'both') err('invalid_family', '--family', `must be ipv4, ipv6 or both, not "${String(family)}"`);
  const v4 = family !== 'ipv6';
  const v6 = family !== 'ipv4';

  if (!isPort(spec.port)) err('invalid_port', '--port', `the intercept listener's port must be 1..65535, not "${String(spec.port)}"`);

  const lists: Array<[unknown, FirewallFlag, FirewallSpecErrorCode]> = [
    [spec.interfaces, '--interface', 'invalid_interface'],
    [spec.sources, '--source', 'invalid_source'],
    [spec.excludes, '--exclude', 'invalid_exclude'],
    [spec.dports, '--dport', 'invalid_dport'],
  ];
  for (const [list, flag, code] of lists) {
    if (!Array.isArray(list)) err(code, flag, 'must be a list');
    else if (list.length > MAX_LIST) err(code, flag, `at most ${MAX_LIST} entries, got ${list.length}`);
  }
  const listOk = (l: unknown): l is unknown[] => Array.isArray(l) && l.length <= MAX_LIST;

  const interfaces: string[] = [];
  if (listOk(spec.interfaces)) {
    if (spec.interfaces.length === 0) err('invalid_interface', '--interface', 'name at least one interface whose TCP connections are intercepted (the LAN side)');
    for (const name of spec.interfaces) {
      if (typeof name !== 'string' || name.length === 0) err('invalid_interface', '--interface', 'an interface name must not be empty');
      else if (name.length > MAX_IFNAME) err('invalid_interface', '--interface', `"${name}" is longer than ${MAX_IFNAME} characters (Linux IFNAMSIZ)`);
      else if (!IFNAME.test(name)) err('invalid_interface', '--interface', `"${name}" is not an interface name (letters, digits, "_", "-" and "." only, not starting with "-" or ".")`);
      else interfaces.push(name);
    }
  }

  const cidrs = (list: unknown, flag: FirewallFlag, code: FirewallSpecErrorCode): { v4: string[]; v6: string[] } => {
    const out = { v4: [] as string[], v6: [] as string[] };
    if (!listOk(list)) return out;
    for (const text of list) {
      const parsed = typeof text === 'string' ? parseCidr(text.trim()) : null;
      if (!parsed?.ok) {
        const why = parsed ? parsed.error.message : 'not a string';
        err(code, flag, why.includes(String(text)) ? why : `"${String(text)}": ${why}`);
        continue;
      }
      const c = parsed.value;
      if (c.family === 4 && !v4) err(code, flag, `"${String(text)}" is IPv4, but --family is ipv6`);
      else if (c.family === 6 && !v6) err(code, flag, `"${String(text)}" is IPv6, but --family is ipv4`);
      else (c.family === 4 ? out.v4 : out.v6).push(formatCidr(c));
    }
    return { v4: unique(out.v4), v6: unique(out.v6) };
  };
  const sources = cidrs(spec.sources, '--source', 'invalid_source');
  const excludes = cidrs(spec.excludes, '--exclude', 'invalid_exclude');

  const dports: number[] = [];
  if (listOk(spec.dports)) {
    for (const p of spec.dports) {
      if (isPort(p)) dports.push(p);
      else err('invalid_dport', '--dport', `a destination port must be 1..65535, not "${String(p)}"`);
    }
  }

  const mark = spec.mark ?? DEFAULT_MARK;
  if (!isU32(mark)) err('invalid_mark', '--mark', `must be 1..0xffffffff, not "${String(spec.mark)}"`);
  const table = spec.table ?? DEFAULT_TABLE;
  if (!isU32(table)) err('invalid_table', '--table', `must be a routing table number 1..4294967295, not "${String(spec.table)}"`);
  else if (RESERVED_TABLES.has(table)) err('invalid_table', '--table', `${table} is the system's "${RESERVED_TABLES.get(table)}" table; choose a table of edgeward's own (default ${DEFAULT_TABLE})`);

  if (errors.length > 0) return errors;
  return {
    port: spec.port,
    interfaces: unique(interfaces),
    sources4: sources.v4,
    sources6: sources.v6,
    restrictSources: Array.isArray(spec.sources) && spec.sources.length > 0,
    excludes4: excludes.v4,
    excludes6: excludes.v6,
    dports: unique(dports).sort((a, b) => a - b),
    mark,
    table,
    v4,
    v6,
  };
}

/** The spec's problems (empty when it is fine); each names its flag. */
export function validateFirewallSpec(spec: FirewallSpec): FirewallSpecError[] {
  const r = resolveFirewallSpec(spec);
  return Array.isArray(r) ? r : [];
}

/** The resolved spec, or a FirewallError 'invalid_spec' listing every problem. */
export function resolveOrThrow(spec: FirewallSpec): ResolvedFirewallSpec {
  const r = resolveFirewallSpec(spec);
  if (Array.isArray(r)) throw new FirewallError('invalid_spec', r.map((e) => e.message).join('; '), r);
  return r;
}
