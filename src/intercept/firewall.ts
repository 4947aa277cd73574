// The interception firewall: an nftables table of edgeward's own (TPROXY to the intercept listener,
// the socket-match fast path, local destinations skipped) plus the policy routing TPROXY needs
// (`ip rule fwmark MARK lookup TABLE`, `local default dev lo table TABLE`). The generator is pure;
// the applier runs nft and ip through an injected runner. Ownership is explicit: the nft table has
// edgeward's name, and every ip rule and route edgeward adds carries its routing protocol number
// (ROUTE_PROTOCOL), so removal finds exactly what edgeward created and nothing else.
import { execFile } from 'node:child_process';
import { formatCidr, parseCidr } from '../net/address.js';

/** The nftables table (family inet) that edgeward owns; nothing else is ever touched. */
export const NFT_TABLE = 'edgeward_intercept';
/** Default packet mark of intercepted packets: 0x6577 is "ew". */
export const DEFAULT_MARK = 0x6577;
/** Default routing table of the local-delivery route (0x6577). */
export const DEFAULT_TABLE = 25975;
/** Routing protocol number ("proto 101", 0x65 = "e") tagging the ip rules and routes edgeward adds. */
export const ROUTE_PROTOCOL = 101;
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
export class FirewallError extends Error {
  constructor(
    readonly code: FirewallErrorCode,
    message: string,
    /** the spec's problems, for code 'invalid_spec' */
    readonly specErrors: FirewallSpecError[] = [],
  ) {
    super(message);
    this.name = 'FirewallError';
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
      const c = typeof text === 'string' ? ((r) => (r.ok ? r.value : r.error.message))(parseCidr(text.trim())) : 'not a string';
      if (typeof c === 'string') {
        err(code, flag, c.includes(String(text)) ? c : `"${String(text)}": ${c}`);
        continue;
      }
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

function resolveOrThrow(spec: FirewallSpec): ResolvedFirewallSpec {
  const r = resolveFirewallSpec(spec);
  if (Array.isArray(r)) throw new FirewallError('invalid_spec', r.map((e) => e.message).join('; '), r);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Generation (pure)

const hex = (n: number): string => `0x${n.toString(16)}`;

function set(name: string, type: string, elements: readonly string[], interval: boolean): string[] {
  const lines = [`\tset ${name} {`, `\t\ttype ${type}`];
  if (interval) lines.push('\t\tflags interval', '\t\tauto-merge');
  if (elements.length > 0) lines.push(`\t\telements = { ${elements.join(', ')} }`);
  lines.push('\t}');
  return lines;
}

/**
 * The nft script of the interception table. It first declares and deletes the table, so loading it
 * with `nft -f` replaces any earlier version in one transaction (idempotent, atomic).
 */
export function renderRuleset(spec: FirewallSpec): string {
  const s = resolveOrThrow(spec);
  const mark = hex(s.mark);
  const families = s.v4 && s.v6 ? 'IPv4 and IPv6' : s.v4 ? 'IPv4' : 'IPv6';
  const lines: string[] = [
    `# edgeward interception firewall: ${families} TCP arriving on ${s.interfaces.join(', ')} -> TPROXY to port ${s.port}, mark ${mark}.`,
    `# Policy routing (added by edgeward firewall apply): ip rule fwmark ${mark} lookup ${s.table}; local default dev lo table ${s.table}.`,
    '# Load with `nft -f`: the first two lines make reloading replace the table in the same transaction.',
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
  ];
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
  lines.push('\tchain prerouting {', ...rules.map((r) => `\t\t${r}`), '\t}', '}');
  return `${lines.join('\n')}\n`;
}

/** The nft script that deletes the table if it is there (and is a no-op otherwise), in one transaction. */
export function renderRemoval(): string {
  return `table inet ${NFT_TABLE} {}\ndelete table inet ${NFT_TABLE}\n`;
}

type Fam = '-4' | '-6';

function familyFlags(s: { v4: boolean; v6: boolean }): Fam[] {
  return [...(s.v4 ? (['-4'] as const) : []), ...(s.v6 ? (['-6'] as const) : [])];
}

const anyDst = (f: Fam): string => (f === '-4' ? '0.0.0.0/0' : '::/0');

function ruleArgv(f: Fam, verb: 'add' | 'del', mark: number, table: number): string[] {
  return ['ip', f, 'rule', verb, 'fwmark', hex(mark), 'lookup', String(table), 'protocol', String(ROUTE_PROTOCOL)];
}

function routeArgv(f: Fam, verb: 'add' | 'del', table: number, dst = anyDst(f)): string[] {
  return ['ip', f, 'route', verb, 'local', dst, 'dev', 'lo', 'table', String(table), 'proto', String(ROUTE_PROTOCOL)];
}

/** The ip rule / route commands (argv lists) that set up, or take down, the policy routing of `spec`. */
export function routingCommands(spec: FirewallSpec, action: 'apply' | 'remove'): string[][] {
  const s = resolveOrThrow(spec);
  const verb = action === 'apply' ? 'add' : 'del';
  return familyFlags(s).flatMap((f) => [ruleArgv(f, verb, s.mark, s.table), routeArgv(f, verb, s.table)]);
}

// ---------------------------------------------------------------------------------------------
// Running nft and ip

export interface RunResult {
  /** exit status; null when it did not run to an exit (see `error`) */
  code: number | null;
  stdout: string;
  stderr: string;
  /** set when the command could not run or finish: an errno code (ENOENT, EACCES) or ETIMEDOUT */
  error?: string;
}

/** Runs argv (argv[0] looked up in PATH), with `input` on stdin. Never rejects. */
export type CommandRunner = (argv: readonly string[], input?: string) => Promise<RunResult>;

const SBIN = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

function execOnce(file: string, args: readonly string[], input: string | undefined, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (e, stdout, stderr) => {
      if (!e) return resolve({ code: 0, stdout, stderr });
      const err = e as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
      if (typeof err.code === 'number') return resolve({ code: err.code, stdout, stderr });
      if (err.killed) return resolve({ code: null, stdout, stderr, error: 'ETIMEDOUT' });
      resolve({ code: null, stdout, stderr: stderr || err.message, error: typeof err.code === 'string' ? err.code : 'EFAIL' });
    });
    child.stdin?.on('error', () => {
      /* the command exited without reading its input: its exit status tells */
    });
    child.stdin?.end(input ?? '');
  });
}

/** A runner using child_process.execFile with a timeout; nft and ip are also found in /usr/sbin and /sbin when PATH lacks them. */
export function execRunner(timeoutMs = 15_000): CommandRunner {
  return async (argv, input) => {
    const [file, ...args] = argv;
    if (file === undefined) return { code: null, stdout: '', stderr: 'empty command', error: 'EINVAL' };
    const first = await execOnce(file, args, input, timeoutMs);
    if (first.error !== 'ENOENT' || file.includes('/')) return first;
    for (const dir of SBIN) {
      const r = await execOnce(`${dir}/${file}`, args, input, timeoutMs);
      if (r.error !== 'ENOENT') return r;
    }
    return first;
  };
}

export const defaultRunner: CommandRunner = execRunner();

function shellWord(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** "ip -4 rule add ..." for messages. */
export function describeArgv(argv: readonly string[]): string {
  return argv.map(shellWord).join(' ');
}

/** Turns a failed command into a FirewallError that says what to do: the one place this mapping lives. */
export function commandFailure(argv: readonly string[], r: RunResult): FirewallError {
  const cmd = describeArgv(argv);
  const tool = argv[0]?.split('/').pop();
  const detail = (r.stderr.trim() || r.stdout.trim() || `exit status ${String(r.code)}`).split('\n').slice(0, 6).join(' | ');
  if (r.error === 'ENOENT') {
    return tool === 'nft'
      ? new FirewallError('nft_missing', `nft not found: install nftables (e.g. apt install nftables) to manage the interception firewall`)
      : new FirewallError('ip_missing', `${tool ?? 'ip'} not found: install iproute2 (e.g. apt install iproute2) for the policy routing`);
  }
  if (r.error === 'ETIMEDOUT') return new FirewallError('timeout', `${cmd}: did not finish in time`);
  if (r.error !== undefined) return new FirewallError(tool === 'nft' ? 'nft_failed' : 'ip_failed', `${cmd}: cannot run it (${r.error}): ${detail}`);
  if (/Operation not permitted|Permission denied|EPERM/i.test(r.stderr)) {
    return new FirewallError('permission', `${cmd}: ${detail}: changing the firewall and policy routing needs root (CAP_NET_ADMIN)`);
  }
  if (tool === 'ip' && /Address family not supported/i.test(r.stderr)) {
    return new FirewallError('family_unavailable', `${cmd}: ${detail}: IPv6 is disabled on this machine; use --family ipv4`);
  }
  if (tool === 'ip' && /Nexthop device is not up/i.test(r.stderr)) {
    return new FirewallError('ip_failed', `${cmd}: ${detail}: the loopback interface is down (ip link set lo up)`);
  }
  if (tool === 'nft' && /No such file or directory|Operation not supported|not supported/i.test(r.stderr)) {
    return new FirewallError(
      'kernel_unsupported',
      `${cmd}: the kernel refused the ruleset (${detail}): it needs nf_tables with nft_tproxy, nft_socket and nft_fib_inet (modprobe nft_tproxy nft_socket nft_fib_inet)`,
    );
  }
  return new FirewallError(tool === 'nft' ? 'nft_failed' : 'ip_failed', `${cmd}: ${detail}`);
}

async function must(run: CommandRunner, argv: readonly string[], input?: string): Promise<RunResult> {
  const r = await run(argv, input);
  if (r.code !== 0 || r.error !== undefined) throw commandFailure(argv, r);
  return r;
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
  throw new FirewallError('ip_failed', `${describeArgv(argv)}: unexpected output (not a JSON list): ${text.slice(0, 200)}`);
}

/** An ip rule as edgeward sees it. */
export interface PolicyRule {
  family: 'ipv4' | 'ipv6';
  priority: number;
  mark: number;
  table: number;
  /** carries edgeward's routing protocol number: edgeward added it */
  ours: boolean;
}

/** A route in a table other than main/local that edgeward added, or that does what its route does. */
export interface LocalRoute {
  family: 'ipv4' | 'ipv6';
  table: number;
  dst: string;
  ours: boolean;
}

const famName = (f: Fam): 'ipv4' | 'ipv6' => (f === '-4' ? 'ipv4' : 'ipv6');

/** The rules that send marked packets to a table: plain "from all fwmark M lookup T" (exact mark, no other selector). */
async function listMarkRules(run: CommandRunner, f: Fam): Promise<PolicyRule[] | null> {
  const argv = ['ip', '-N', '-j', f, 'rule', 'show'];
  const r = await run(argv);
  if (r.code !== 0 && /Address family not supported/i.test(r.stderr)) return null;
  if (r.code !== 0 || r.error !== undefined) throw commandFailure(argv, r);
  const out: PolicyRule[] = [];
  for (const j of parseJsonList<IpRuleJson>(argv, r)) {
    if (j.fwmark === undefined || j.table === undefined || j.priority === undefined) continue;
    const selectors = Object.keys(j).filter((k) => !['priority', 'src', 'fwmark', 'fwmask', 'table', 'protocol', 'flags'].includes(k));
    if (selectors.length > 0 || (j.src !== undefined && j.src !== 'all')) continue;
    if (j.fwmask !== undefined && Number(j.fwmask) !== 0xffffffff) continue;
    const mark = Number(j.fwmark);
    const table = Number(j.table);
    if (!Number.isInteger(mark) || !Number.isInteger(table)) continue;
    out.push({ family: famName(f), priority: j.priority, mark, table, ours: j.protocol === String(ROUTE_PROTOCOL) });
  }
  return out;
}

/** Routes edgeward added (any table), plus any "local default dev lo" route in `table`. */
async function listLocalRoutes(run: CommandRunner, f: Fam, table?: number): Promise<LocalRoute[] | null> {
  const ours: LocalRoute[] = [];
  const argvOurs = ['ip', '-N', '-j', f, 'route', 'show', 'table', 'all', 'proto', String(ROUTE_PROTOCOL)];
  const r = await run(argvOurs);
  if (r.code !== 0 && /Address family not supported/i.test(r.stderr)) return null;
  if (r.code !== 0 || r.error !== undefined) throw commandFailure(argvOurs, r);
  for (const j of parseJsonList<IpRouteJson>(argvOurs, r)) {
    if (j.dst === undefined || j.table === undefined) continue;
    ours.push({ family: famName(f), table: Number(j.table), dst: j.dst, ours: true });
  }
  if (table === undefined) return ours;
  const argv = ['ip', '-N', '-j', f, 'route', 'show', 'table', String(table)];
  const t = await run(argv);
  if (t.code !== 0 && t.error === undefined && /table does not exist/i.test(t.stderr)) return ours;
  if (t.code !== 0 || t.error !== undefined) throw commandFailure(argv, t);
  const others: LocalRoute[] = [];
  for (const j of parseJsonList<IpRouteJson>(argv, t)) {
    if (j.type !== 'local' || j.dst !== 'default' || j.dev !== 'lo') continue;
    if (j.protocol === String(ROUTE_PROTOCOL)) continue; // already in `ours`
    others.push({ family: famName(f), table, dst: j.dst, ours: false });
  }
  return [...ours, ...others];
}

function routeDst(f: Fam, dst: string): string {
  return dst === 'default' ? anyDst(f) : dst;
}

async function tableExists(run: CommandRunner): Promise<boolean> {
  const argv = ['nft', 'list', 'table', 'inet', NFT_TABLE];
  const r = await run(argv);
  if (r.code === 0) return true;
  if (r.error === undefined && /No such file or directory/i.test(r.stderr)) return false;
  throw commandFailure(argv, r);
}

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
  const script = renderRuleset(spec);
  const changes: string[] = [];
  try {
    for (const f of ['-4', '-6'] as const) {
      const wanted = f === '-4' ? s.v4 : s.v6;
      const rules = await listMarkRules(run, f);
      if (rules === null) {
        if (wanted) throw new FirewallError('family_unavailable', `ip ${f} rule show: IPv6 is disabled on this machine; use --family ipv4`);
        continue;
      }
      for (const rule of rules) {
        if (!rule.ours || (wanted && rule.mark === s.mark && rule.table === s.table)) continue;
        const argv = ['ip', f, 'rule', 'del', 'priority', String(rule.priority), 'fwmark', hex(rule.mark), 'lookup', String(rule.table), 'protocol', String(ROUTE_PROTOCOL)];
        await must(run, argv);
        changes.push(describeArgv(argv));
      }
      const routes = (await listLocalRoutes(run, f, wanted ? s.table : undefined)) ?? [];
      for (const route of routes) {
        if (!route.ours || (wanted && route.table === s.table && route.dst === 'default')) continue;
        const argv = routeArgv(f, 'del', route.table, routeDst(f, route.dst));
        await must(run, argv);
        changes.push(describeArgv(argv));
      }
      if (!wanted) continue;
      if (!rules.some((r) => r.mark === s.mark && r.table === s.table)) {
        const argv = ruleArgv(f, 'add', s.mark, s.table);
        await must(run, argv);
        changes.push(describeArgv(argv));
      }
      if (!routes.some((r) => r.table === s.table && r.dst === 'default')) {
        const argv = routeArgv(f, 'add', s.table);
        await must(run, argv);
        changes.push(describeArgv(argv));
      }
    }
    await must(run, ['nft', '-f', '-'], script);
    changes.push(`nft -f -: loaded table inet ${NFT_TABLE} (TPROXY to port ${s.port} on ${s.interfaces.join(', ')})`);
    return { changes };
  } catch (e) {
    if (changes.length > 0) await removeFirewall(spec, run).catch(() => undefined);
    throw e;
  }
}

/**
 * Removes what edgeward added: its nft table (when present) and the ip rules and routes carrying its
 * routing protocol number, whatever --mark/--table they were made with. Nothing else is touched;
 * with nothing to remove it changes nothing and succeeds. `spec` is accepted for symmetry with
 * applyFirewall and may be empty.
 */
export async function removeFirewall(_spec: Partial<FirewallSpec> = {}, run: CommandRunner = defaultRunner): Promise<FirewallResult> {
  const changes: string[] = [];
  if (await tableExists(run)) {
    await must(run, ['nft', '-f', '-'], renderRemoval());
    changes.push(`nft delete table inet ${NFT_TABLE}`);
  }
  for (const f of ['-4', '-6'] as const) {
    for (const rule of (await listMarkRules(run, f)) ?? []) {
      if (!rule.ours) continue;
      const argv = ['ip', f, 'rule', 'del', 'priority', String(rule.priority), 'fwmark', hex(rule.mark), 'lookup', String(rule.table), 'protocol', String(ROUTE_PROTOCOL)];
      await must(run, argv);
      changes.push(describeArgv(argv));
    }
    for (const route of (await listLocalRoutes(run, f)) ?? []) {
      const argv = routeArgv(f, 'del', route.table, routeDst(f, route.dst));
      await must(run, argv);
      changes.push(describeArgv(argv));
    }
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
  const loaded = await tableExists(run);
  const rules: PolicyRule[] = [];
  const routes: LocalRoute[] = [];
  let complete = loaded;
  for (const f of ['-4', '-6'] as const) {
    const wanted = f === '-4' ? family !== 'ipv6' : family !== 'ipv4';
    const r = (await listMarkRules(run, f)) ?? [];
    const rt = (await listLocalRoutes(run, f, table)) ?? [];
    rules.push(...r.filter((x) => x.ours || (x.mark === mark && x.table === table)));
    routes.push(...rt);
    if (wanted && !(r.some((x) => x.mark === mark && x.table === table) && rt.some((x) => x.table === table && x.dst === 'default'))) complete = false;
  }
  return { table: loaded, rules, routes, applied: complete };
}
