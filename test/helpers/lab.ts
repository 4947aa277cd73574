// The network lab: throw-away network namespaces joined by veth pairs shaped with tc tbf, for tests
// and benchmarks that cross a real (if virtual) network. Everything a Lab creates (namespaces, the
// processes running in them, temporary directories) is removed by destroy(), and by a synchronous
// process-exit / signal hook if the process dies before it gets there. Traffic never leaves the lab:
// veth pairs are created directly inside the lab's namespaces and only private addresses are allowed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Linux IFNAMSIZ - 1: the longest interface name the kernel takes. */
const MAX_IFNAME = 15;
const OUTPUT_LIMIT = 256 * 1024;

export type LabErrorCode = 'invalid' | 'destroyed' | 'exec_failed' | 'exec_timeout' | 'wait_timeout' | 'cleanup_failed';

/** A lab operation that failed; the message says which command and why. */
export class LabError extends Error {
  constructor(
    readonly code: LabErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LabError';
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands

export interface ExecOptions {
  /** kill the command (its whole process group) after this long; default 10 s */
  timeoutMs?: number;
  /** extra environment variables, on top of this process's environment */
  env?: Record<string, string>;
  /** written to the command's stdin (then closed) */
  input?: string;
  /** resolve with the result instead of rejecting when the exit code is not 0 */
  allowFailure?: boolean;
  cwd?: string;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function describeArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Appends to a bounded text buffer, keeping the tail (the end of a log is what explains a failure). */
function appendBounded(buf: string, chunk: string, limit = OUTPUT_LIMIT): string {
  const s = buf + chunk;
  return s.length > limit ? s.slice(s.length - limit) : s;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Signals the process group led by `child` (spawned detached), only while the leader is alive so the group id cannot have been reused. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || !alive(child)) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      process.kill(child.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Runs argv to completion (in the current namespace); rejects on a non-zero exit unless allowFailure. */
export function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new LabError('invalid', 'empty command'));
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      detached: true,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout = appendBounded(stdout, d)));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = appendBounded(stderr, d)));
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new LabError('exec_failed', `${describeArgv(argv)}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result: ExecResult = { code, signal, stdout, stderr, ms: Date.now() - started };
      if (timedOut) reject(new LabError('exec_timeout', `${describeArgv(argv)}: no exit after ${timeoutMs} ms; stderr: ${stderr.trim().slice(-2000)}`));
      else if (code !== 0 && !opts.allowFailure) reject(new LabError('exec_failed', `${describeArgv(argv)} exited with ${code ?? signal}: ${stderr.trim().slice(-2000)}`));
      else resolve(result);
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // the command may exit without reading its input
      child.stdin.end(opts.input);
    }
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// Long-running processes

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
}

/** A long-running program inside a lab namespace; stdout/stderr tails are kept for diagnostics. */
export class LabProcess {
  readonly pid: number;
  readonly exited: Promise<ProcessExit>;
  private out = '';
  private err = '';
  private exit: ProcessExit | null = null;

  constructor(
    readonly ns: Netns,
    readonly argv: readonly string[],
    private readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) throw new LabError('exec_failed', `cannot start ${describeArgv(argv)}`);
    this.pid = child.pid;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.out = appendBounded(this.out, d)));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.err = appendBounded(this.err, d)));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      child.on('error', (e) => {
        this.err = appendBounded(this.err, `\nspawn error: ${e.message}\n`);
        this.exit ??= { code: null, signal: null };
        resolve(this.exit);
      });
    });
  }

  get running(): boolean {
    return this.exit === null && alive(this.child);
  }

  /** The exit status, or null while running. */
  get exitStatus(): ProcessExit | null {
    return this.exit;
  }

  stdout(): string {
    return this.out;
  }

  stderr(): string {
    return this.err;
  }

  /** Resolves with the first match of `re` in stdout+stderr; rejects on timeout or exit. */
  async waitForOutput(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = (this.out + '\n' + this.err).match(re);
      if (m) return m;
      if (!this.running) throw new LabError('wait_timeout', `${describeArgv(this.argv)} exited (${JSON.stringify(this.exit)}) before printing ${re}; stderr: ${this.err.slice(-2000)}`);
      if (Date.now() > deadline) throw new LabError('wait_timeout', `${describeArgv(this.argv)} did not print ${re} within ${timeoutMs} ms; stderr: ${this.err.slice(-2000)}`);
      await delay(50);
    }
  }

  /** Sends `signal` to the process, waits up to graceMs, then SIGKILLs its process group. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<ProcessExit & { forced: boolean }> {
    if (!this.running) return { ...(this.exit ?? { code: null, signal: null }), forced: false };
    try {
      process.kill(this.pid, signal);
    } catch {
      /* exited meanwhile */
    }
    const graceful = await Promise.race([this.exited, delay(graceMs).then(() => null)]);
    if (graceful) return { ...graceful, forced: false };
    signalGroup(this.child, 'SIGKILL');
    const forced = await Promise.race([this.exited, delay(3000).then(() => ({ code: null, signal: null }))]);
    return { ...forced, forced: true };
  }

  /** Synchronous last resort (process exit hook). */
  killSync(): void {
    signalGroup(this.child, 'SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Environment checks

let probeCache: string | null | undefined;

function hasProgram(name: string): boolean {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0;
}

/** Creates and removes a probe namespace with a tbf-shaped veth pair and reads MPTCP there. */
function probeKernel(): string | null {
  const ns = `ewprobe${process.pid}`;
  const ip = (args: string[]) => spawnSync('ip', args, { encoding: 'utf8', timeout: 5000 });
  const add = ip(['netns', 'add', ns]);
  if (add.status !== 0) return `\`ip netns add\` does not work here: ${(add.stderr || add.error?.message || '').trim()}`;
  try {
    const mptcp = spawnSync('ip', ['netns', 'exec', ns, 'cat', '/proc/sys/net/mptcp/enabled'], { encoding: 'utf8', timeout: 5000 });
    if (mptcp.status !== 0) return 'the kernel has no MPTCP (no /proc/sys/net/mptcp/enabled)';
    if (mptcp.stdout.trim() !== '1') return 'MPTCP is disabled in new network namespaces (net.mptcp.enabled=0)';
    const limits = ip(['-n', ns, 'mptcp', 'limits', 'set', 'subflows', '2', 'add_addr_accepted', '2']);
    if (limits.status !== 0) return `\`ip mptcp limits\` does not work: ${limits.stderr.trim()}`;
    const veth = ip(['-n', ns, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
    if (veth.status !== 0) return `cannot create veth pairs: ${veth.stderr.trim()}`;
    const tbf = spawnSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'probe0', 'root', 'tbf', 'rate', '50mbit', 'burst', '64kb', 'latency', '50ms'], { encoding: 'utf8', timeout: 5000 });
    if (tbf.status !== 0) return `tc tbf is unavailable: ${(tbf.stderr || tbf.error?.message || '').trim()}`;
    return null;
  } finally {
    ip(['netns', 'del', ns]);
  }
}

/**
 * Why lab tests cannot run here (not root, no `ip netns`, no MPTCP, no tc tbf, a missing program),
 * or null when they can. `needs` lists programs the caller runs (curl, mptcpize, python3, ...).
 */
export function labSkipReason(opts: { needs?: string[] } = {}): string | null {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces, veth, tc)';
  for (const prog of ['ip', 'tc', ...(opts.needs ?? [])]) {
    if (!hasProgram(prog)) return `program "${prog}" is not installed`;
  }
  if (probeCache === undefined) probeCache = probeKernel();
  return probeCache;
}

// ---------------------------------------------------------------------------------------------
// The lab

export interface Netns {
  /** the name given to `ip netns` */
  readonly name: string;
  /** what it stands for in the topology: proxy, server, router, ... */
  readonly role: string;
}

export interface LinkOptions {
  /** address of side A with prefix, e.g. 10.248.1.1/24 (private ranges only) */
  addrA: string;
  addrB: string;
  /** shape both directions to this rate with tc tbf */
  rateMbit?: number;
  /** interface names; default: the peer's role plus a counter, e.g. "server0" */
  ifA?: string;
  ifB?: string;
}

export interface LinkEnd {
  ns: Netns;
  ifname: string;
  /** address with prefix */
  cidr: string;
  /** address alone */
  ip: string;
}

export interface Link {
  a: LinkEnd;
  b: LinkEnd;
  rateMbit?: number;
}

export type MptcpEndpointFlag = 'signal' | 'subflow' | 'backup' | 'fullmesh';

const liveLabs = new Set<Lab>();
let labCounter = 0;
let hooksInstalled = false;

function isPrivateAddress(ip: string): boolean {
  if (ip.includes(':')) return /^f[cd][0-9a-f]{2}:/i.test(ip);
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return false;
  const [a, b] = p as [number, number, number, number];
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
}

function parseCidr(cidr: string): string {
  const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(cidr);
  if (!m || !isPrivateAddress(m[1]!)) throw new LabError('invalid', `"${cidr}" is not a private address with prefix (10/8, 172.16/12, 192.168/16, fc00::/7)`);
  return m[1]!;
}

function checkIfname(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) || name.length > MAX_IFNAME) throw new LabError('invalid', `interface name "${name}" must be 1..${MAX_IFNAME} characters [A-Za-z0-9_.-]`);
  return name;
}

/** Sizes tbf for `rateMbit`: a burst of at least 64 KiB (a GSO packet) or 5 ms, a 50 ms queue. */
export function tbfArgs(rateMbit: number): string[] {
  if (!(rateMbit > 0 && rateMbit <= 100_000)) throw new LabError('invalid', `rateMbit ${rateMbit} is out of range`);
  const burst = Math.max(64 * 1024, Math.ceil(((rateMbit * 1e6) / 8) * 0.005));
  return ['tbf', 'rate', `${rateMbit}mbit`, 'burst', String(burst), 'latency', '50ms'];
}

/** SIGKILLs the pids listed (whitespace separated) by `ip netns pids`. */
function killPids(list: string): void {
  for (const pid of list.split(/\s+/).filter((w) => /^\d+$/.test(w)).map(Number)) {
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

function cleanupAllSync(): void {
  for (const lab of [...liveLabs]) lab.destroySync();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      // With no other handler left, re-raise so the default action (termination) happens.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * A set of network namespaces and what runs in them. Names are unique per process and run
 * (`ew<pid>x<counter>-<role>`); interfaces are created inside the namespaces, never in the host's.
 */
export class Lab {
  readonly id: string;
  private readonly namespaces: Netns[] = [];
  private readonly processes: LabProcess[] = [];
  private readonly tempDirs: string[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private readonly linkCount = new Map<string, number>();
  private destroying: Promise<void> | null = null;

  constructor() {
    this.id = `ew${process.pid}x${++labCounter}`;
    installHooks();
    liveLabs.add(this);
  }

  get destroyed(): boolean {
    return this.destroying !== null;
  }

  /** Names of the namespaces this lab created (for checks after destroy). */
  get namespaceNames(): string[] {
    return this.namespaces.map((n) => n.name);
  }

  private alive(): void {
    if (this.destroying) throw new LabError('destroyed', `lab ${this.id} is destroyed`);
  }

  /** Refuses namespaces this lab did not create: a lab only ever touches its own. */
  private own(ns: Netns): Netns {
    if (!this.namespaces.includes(ns)) throw new LabError('invalid', `namespace ${ns.name} does not belong to lab ${this.id}`);
    return ns;
  }

  /** Runs a mutating step so that destroy() waits for it instead of racing it. */
  private async step<T>(f: () => Promise<T>): Promise<T> {
    this.alive();
    const p = f();
    this.pending.add(p);
    try {
      return await p;
    } finally {
      this.pending.delete(p);
    }
  }

  /** Creates a namespace for `role` (lower-case letters and digits) with lo up. */
  async addNamespace(role: string): Promise<Netns> {
    if (!/^[a-z][a-z0-9]{0,15}$/.test(role)) throw new LabError('invalid', `role "${role}" must be 1..16 of [a-z0-9], starting with a letter`);
    if (this.namespaces.some((n) => n.role === role)) throw new LabError('invalid', `lab ${this.id} already has a "${role}" namespace`);
    return this.step(async () => {
      const ns: Netns = { name: `${this.id}-${role}`, role };
      this.namespaces.push(ns); // recorded before creation so a half-made namespace is still removed
      await run(['ip', 'netns', 'add', ns.name]);
      await run(['ip', '-n', ns.name, 'link', 'set', 'lo', 'up']);
      return ns;
    });
  }

  private defaultIfname(self: Netns, peer: Netns): string {
    const key = `${self.name}>${peer.name}`;
    const n = this.linkCount.get(key) ?? 0;
    this.linkCount.set(key, n + 1);
    const suffix = String(n);
    return peer.role.slice(0, MAX_IFNAME - suffix.length) + suffix;
  }

  /** Joins two namespaces with a veth pair, addresses both ends, and shapes both directions if rateMbit is given. */
  async link(a: Netns, b: Netns, opts: LinkOptions): Promise<Link> {
    this.own(a);
    this.own(b);
    if (a.name === b.name) throw new LabError('invalid', 'a link needs two different namespaces');
    const ipA = parseCidr(opts.addrA);
    const ipB = parseCidr(opts.addrB);
    const ifA = checkIfname(opts.ifA ?? this.defaultIfname(a, b));
    const ifB = checkIfname(opts.ifB ?? this.defaultIfname(b, a));
    return this.step(async () => {
      await run(['ip', 'link', 'add', ifA, 'netns', a.name, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
      const ends: LinkEnd[] = [
        { ns: a, ifname: ifA, cidr: opts.addrA, ip: ipA },
        { ns: b, ifname: ifB, cidr: opts.addrB, ip: ipB },
      ];
      for (const end of ends) {
        await run(['ip', '-n', end.ns.name, 'addr', 'add', end.cidr, 'dev', end.ifname, ...(end.ip.includes(':') ? ['nodad'] : [])]);
        if (opts.rateMbit !== undefined) await run(['tc', '-n', end.ns.name, 'qdisc', 'add', 'dev', end.ifname, 'root', ...tbfArgs(opts.rateMbit)]);
        await run(['ip', '-n', end.ns.name, 'link', 'set', 'dev', end.ifname, 'up']);
      }
      const link: Link = { a: ends[0]!, b: ends[1]! };
      if (opts.rateMbit !== undefined) link.rateMbit = opts.rateMbit;
      return link;
    });
  }

  /** Runs `ip -n NS ...args`. */
  async ip(ns: Netns, args: string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.step(() => run(['ip', '-n', this.own(ns).name, ...args], opts));
  }

  /** Runs a program inside the namespace (`ip netns exec`) to completion. */
  async exec(ns: Netns, argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.step(() => run(['ip', 'netns', 'exec', this.own(ns).name, ...argv], opts));
  }

  /** Starts a long-running program inside the namespace; destroy() stops it. */
  spawn(ns: Netns, argv: string[], opts: SpawnOptions = {}): LabProcess {
    this.alive();
    const full = ['ip', 'netns', 'exec', this.own(ns).name, ...argv];
    const child = spawn(full[0]!, full.slice(1), {
      detached: true, // its own process group, so a stop reaches its children too
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
    });
    const proc = new LabProcess(ns, full, child);
    this.processes.push(proc);
    return proc;
  }

  /** Brings an interface up or down (link failure in failover tests). */
  async setLinkUp(ns: Netns, ifname: string, up: boolean): Promise<ExecResult> {
    return this.ip(ns, ['link', 'set', 'dev', checkIfname(ifname), up ? 'up' : 'down']);
  }

  /** Adds a route inside the namespace: `ip route add DST via GW [dev DEV]`. */
  async route(ns: Netns, dst: string, via: string, dev?: string): Promise<ExecResult> {
    return this.ip(ns, ['route', 'add', dst, 'via', via, ...(dev ? ['dev', checkIfname(dev)] : [])]);
  }

  /** Sets a net.* sysctl inside the namespace (e.g. net.ipv4.ip_forward=1 on a router). */
  async sysctl(ns: Netns, key: string, value: string | number): Promise<ExecResult> {
    if (!/^net\.[\w.-]+$/.test(key)) throw new LabError('invalid', `sysctl "${key}": only per-namespace net.* keys are allowed`);
    return this.exec(ns, ['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /** `ip mptcp limits set` in the namespace. */
  async mptcpLimits(ns: Netns, limits: { subflows: number; addAddrAccepted: number }): Promise<ExecResult> {
    return this.ip(ns, ['mptcp', 'limits', 'set', 'subflows', String(limits.subflows), 'add_addr_accepted', String(limits.addAddrAccepted)]);
  }

  /** `ip mptcp endpoint add ADDR dev DEV FLAGS...` in the namespace. */
  async mptcpEndpoint(ns: Netns, addr: string, dev: string, flags: MptcpEndpointFlag[]): Promise<ExecResult> {
    return this.ip(ns, ['mptcp', 'endpoint', 'add', addr, 'dev', checkIfname(dev), ...flags]);
  }

  /** A temporary directory removed by destroy(). */
  tempDir(label = 'tmp'): string {
    this.alive();
    const dir = mkdtempSync(join(tmpdir(), `edgeward-lab-${this.id}-${label.replace(/[^\w-]/g, '')}-`));
    this.tempDirs.push(dir);
    return dir;
  }

  /** Stops every process, kills what is left in the namespaces, deletes them and the temp dirs. Idempotent. */
  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const problems: string[] = [];
    await Promise.all(this.processes.map((p) => p.stop('SIGTERM', 2000)));
    // Killing what runs in the namespaces ends in-flight exec() calls too; then the remaining steps
    // (short `ip` commands, each bounded by its timeout) finish so nothing is created behind our back.
    await this.killNamespaceProcesses();
    await Promise.allSettled([...this.pending]);
    await this.killNamespaceProcesses();
    for (const ns of this.namespaces) {
      const del = await run(['ip', 'netns', 'del', ns.name], { allowFailure: true, timeoutMs: 5000 }).catch((e: Error) => ({ code: -1, stderr: e.message }));
      if (del.code !== 0 && !/No such file/i.test(del.stderr)) problems.push(`ip netns del ${ns.name}: ${del.stderr.trim()}`);
    }
    for (const dir of this.tempDirs) await rm(dir, { recursive: true, force: true }).catch((e: Error) => problems.push(`rm ${dir}: ${e.message}`));
    liveLabs.delete(this);
    if (problems.length > 0) throw new LabError('cleanup_failed', problems.join('; '));
  }

  /** SIGKILLs every process inside this lab's namespaces: all of them were started by this lab. */
  private async killNamespaceProcesses(): Promise<void> {
    for (const ns of this.namespaces) {
      const pids = await run(['ip', 'netns', 'pids', ns.name], { allowFailure: true, timeoutMs: 5000 }).catch(() => null);
      killPids(pids?.stdout ?? '');
    }
  }

  /** Synchronous teardown for the process-exit hook. */
  destroySync(): void {
    this.destroying ??= Promise.resolve();
    for (const p of this.processes) p.killSync();
    for (const ns of this.namespaces) {
      killPids(spawnSync('ip', ['netns', 'pids', ns.name], { encoding: 'utf8', timeout: 5000 }).stdout ?? '');
      spawnSync('ip', ['netns', 'del', ns.name], { timeout: 5000 });
    }
    for (const dir of this.tempDirs) rmSync(dir, { recursive: true, force: true });
    liveLabs.delete(this);
  }
}

/** Runs `fn` with a fresh lab and destroys it afterwards, whether `fn` succeeds or throws. */
export async function withLab<T>(fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = new Lab();
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}

/** The namespaces `ip netns list` shows right now. */
export async function listNamespaces(): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list'], { timeoutMs: 5000 });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

// ---------------------------------------------------------------------------------------------
// Topologies

export interface TwoPathLab {
  lab: Lab;
  proxy: Netns;
  server: Netns;
  /** proxy <-> server over 10.248.1.0/24 */
  pathA: Link;
  /** proxy <-> server over 10.248.2.0/24 */
  pathB: Link;
  /** the server's path-A address: what clients connect to */
  serverAddr: string;
  /** the subnet of serverAddr, for a cidr policy */
  serverSubnet: string;
  rateMbit: number;
}

/**
 * Two namespaces, proxy and server, joined by two independent paths (A and B) of `rateMbit` each,
 * with MPTCP set up so that a connection to the server's path-A address gets a second subflow over
 * path B: the server announces its path-B address (signal endpoint); both accept 2 subflows.
 */
export async function buildTwoPathLab(lab: Lab, opts: { rateMbit?: number } = {}): Promise<TwoPathLab> {
  const rateMbit = opts.rateMbit ?? 50;
  const proxy = await lab.addNamespace('proxy');
  const server = await lab.addNamespace('server');
  const pathA = await lab.link(proxy, server, { addrA: '10.248.1.1/24', addrB: '10.248.1.2/24', rateMbit });
  const pathB = await lab.link(proxy, server, { addrA: '10.248.2.1/24', addrB: '10.248.2.2/24', rateMbit });
  for (const ns of [proxy, server]) await lab.mptcpLimits(ns, { subflows: 2, addAddrAccepted: 2 });
  await lab.mptcpEndpoint(server, pathB.b.ip, pathB.b.ifname, ['signal']);
  return { lab, proxy, server, pathA, pathB, serverAddr: pathA.b.ip, serverSubnet: '10.248.1.0/24', rateMbit };
}

// ---------------------------------------------------------------------------------------------
// An HTTP file server and a downloader

export interface FileServer {
  /** URL of the random file */
  url: string;
  sha256: string;
  bytes: number;
  process: LabProcess;
}

/**
 * Serves a random file of `sizeMiB` from `ns` with python's http.server, as an MPTCP listener
 * (mptcpize) unless mptcp is false. Resolves once the file can be fetched inside the namespace.
 */
export async function startFileServer(lab: Lab, ns: Netns, opts: { addr: string; port?: number; sizeMiB?: number; mptcp?: boolean }): Promise<FileServer> {
  const port = opts.port ?? 8000;
  const bytes = Math.round((opts.sizeMiB ?? 24) * 1024 * 1024);
  const dir = lab.tempDir('www');
  const data = randomBytes(bytes);
  await writeFile(join(dir, 'file.bin'), data);
  const sha256 = createHash('sha256').update(data).digest('hex');
  const argv = ['python3', '-m', 'http.server', String(port), '--bind', '0.0.0.0', '--directory', dir];
  const proc = lab.spawn(ns, opts.mptcp === false ? argv : ['mptcpize', 'run', ...argv]);
  const url = `http://${opts.addr.includes(':') ? `[${opts.addr}]` : opts.addr}:${port}/file.bin`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const head = await lab.exec(ns, ['curl', '-sS', '-f', '-I', '--max-time', '2', url], { allowFailure: true, timeoutMs: 5000 });
    if (head.code === 0) break;
    if (!proc.running) throw new LabError('exec_failed', `http.server exited: ${proc.stderr().slice(-2000)}`);
    if (Date.now() > deadline) throw new LabError('wait_timeout', `http.server in ${ns.name} not answering at ${url} after 10 s: ${head.stderr.trim()}`);
    await delay(100);
  }
  return { url, sha256, bytes, process: proc };
}

export interface Download {
  bytes: number;
  seconds: number;
  /** curl's speed_download in Mbit/s (10^6 bit/s) */
  mbps: number;
  sha256: string;
}

export interface DownloadOptions {
  /** run curl under mptcpize (an MPTCP client) */
  mptcpize?: boolean;
  /** host:port of a SOCKS5 proxy (curl --socks5) */
  socks5?: string;
  timeoutMs?: number;
}

/** Downloads `url` with curl inside `ns` into a temp file; returns curl's speed and the file's sha256. */
export async function download(lab: Lab, ns: Netns, url: string, opts: DownloadOptions = {}): Promise<Download> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const out = join(lab.tempDir('dl'), 'download.bin');
  const curl = ['curl', '-sS', '-f', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-o', out, '-w', '%{size_download} %{time_total} %{speed_download}'];
  if (opts.socks5) curl.push('--socks5', opts.socks5);
  curl.push(url);
  const r = await lab.exec(ns, opts.mptcpize ? ['mptcpize', 'run', ...curl] : curl, { timeoutMs: timeoutMs + 5000 });
  const [size, time, speed] = r.stdout.trim().split(/\s+/).map(Number);
  if (size === undefined || time === undefined || speed === undefined || [size, time, speed].some((n) => !Number.isFinite(n))) {
    throw new LabError('exec_failed', `unexpected curl output "${r.stdout.trim()}"`);
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(out)) hash.update(chunk as Buffer);
  await rm(out, { force: true });
  return { bytes: size, seconds: time, mbps: (speed * 8) / 1e6, sha256: hash.digest('hex') };
}

// ---------------------------------------------------------------------------------------------
// edgeward inside the lab

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** "edgeward start not built" while dist/cli/start.js is missing, else null. */
export function edgewardSkipReason(): string | null {
  return existsSync(join(REPO_ROOT, 'dist', 'cli', 'start.js')) ? null : 'edgeward start not built';
}

export interface ApiResponse {
  status: number;
  text: string;
  /** the parsed JSON body, or undefined when the body is not JSON */
  body: unknown;
}

export interface EdgewardInLab {
  process: LabProcess;
  ns: Netns;
  /** host:port of the SOCKS5 listener inside the namespace */
  socks: string;
  /** Calls the REST API from inside the namespace (curl; the token goes through stdin, never argv). */
  api(method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<ApiResponse>;
  /** SIGTERM to edgeward's pid; SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<ProcessExit & { forced: boolean }>;
}

export interface StartEdgewardOptions {
  /** host:port for --socks; default 127.0.0.1:1080 */
  socks?: string;
  /** host:port for --api; default 127.0.0.1:8080 */
  api?: string;
  readyTimeoutMs?: number;
  /** more `edgeward start` flags */
  args?: string[];
  /** the program to run instead of this checkout's bin/edgeward.js (e.g. an installed build) */
  command?: string[];
}

function curlConfigString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}"`;
}

/**
 * Starts `edgeward start` in `ns` (SOCKS on 127.0.0.1:1080, API on 127.0.0.1:8080, a fresh data
 * directory, a random API token) and waits until GET /health answers.
 */
export async function startEdgeward(lab: Lab, ns: Netns, opts: StartEdgewardOptions = {}): Promise<EdgewardInLab> {
  const socks = opts.socks ?? '127.0.0.1:1080';
  const apiAddr = opts.api ?? '127.0.0.1:8080';
  const token = randomBytes(24).toString('hex');
  const data = lab.tempDir('data');
  const argv = [...(opts.command ?? [process.execPath, join(REPO_ROOT, 'bin', 'edgeward.js')]), 'start', '--socks', socks, '--api', apiAddr, '--data', data, ...(opts.args ?? [])];
  const proc = lab.spawn(ns, argv, { env: { EDGEWARD_API_TOKEN: token } });
  const base = `http://${apiAddr}`;

  const api: EdgewardInLab['api'] = async (method, path, body) => {
    const config = [`header = ${curlConfigString(`Authorization: Bearer ${token}`)}`];
    if (body !== undefined) {
      config.push(`header = "Content-Type: application/json"`);
      config.push(`data-binary = ${curlConfigString(JSON.stringify(body))}`);
    }
    const r = await lab.exec(ns, ['curl', '-sS', '--max-time', '5', '-K', '-', '-X', method, '-w', '\n%{http_code}', base + path], { input: config.join('\n') + '\n', timeoutMs: 10_000 });
    const nl = r.stdout.lastIndexOf('\n');
    const text = r.stdout.slice(0, nl);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: Number(r.stdout.slice(nl + 1)), text, body: parsed };
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  for (;;) {
    const r = await lab.exec(ns, ['curl', '-sS', '-f', '-o', '/dev/null', '--max-time', '1', `${base}/health`], { allowFailure: true, timeoutMs: 5000 });
    if (r.code === 0) break;
    if (!proc.running) throw new LabError('exec_failed', `edgeward exited (${JSON.stringify(proc.exitStatus)}) before /health answered; stderr:\n${proc.stderr().slice(-4000)}`);
    if (Date.now() > deadline) throw new LabError('wait_timeout', `edgeward /health did not answer within ${opts.readyTimeoutMs ?? 15_000} ms; stderr:\n${proc.stderr().slice(-4000)}`);
    await delay(200);
  }
  return { process: proc, ns, socks, api, stop: (graceMs = 5000) => proc.stop('SIGTERM', graceMs) };
}

/** Sets the default policy's transport through the API (PUT /api/v1/policies/default); throws on a non-2xx answer. */
export async function setDefaultTransport(ew: EdgewardInLab, transport: Record<string, unknown>): Promise<void> {
  const r = await ew.api('PUT', '/api/v1/policies/default', transport);
  if (r.status < 200 || r.status > 299) throw new LabError('exec_failed', `PUT /api/v1/policies/default ${JSON.stringify(transport)} answered ${r.status}: ${r.text.slice(0, 500)}`);
}

/** The figures of one plain-vs-MPTCP comparison through edgeward. */
export interface SocksMptcpFigures {
  tcpMbps: number;
  mptcpMbps: number;
  ratio: number;
  /** every single download, in order, for the log */
  runs: Array<{ mptcp: boolean; mbps: number; seconds: number; checksumOk: boolean }>;
}

/**
 * Downloads `file` through edgeward's SOCKS5 listener `rounds` times with the default policy at
 * mptcp:false and at mptcp:true (alternating), keeping the best of each (throughput on a shared
 * machine is noisy); with stopWhenRatio, stops after the first round that reaches it.
 * `onMptcpDownload` runs while the first MPTCP download is in flight (e.g. to read /api/v1/connections).
 */
export async function compareThroughEdgeward(
  topo: TwoPathLab,
  ew: EdgewardInLab,
  file: FileServer,
  opts: { rounds?: number; stopWhenRatio?: number; onMptcpDownload?: () => Promise<void> } = {},
): Promise<SocksMptcpFigures> {
  const runs: SocksMptcpFigures['runs'] = [];
  const best = { tcp: 0, mptcp: 0 };
  for (let round = 0; round < Math.min(Math.max(opts.rounds ?? 1, 1), 5); round++) {
    for (const mptcp of [false, true]) {
      await setDefaultTransport(ew, { mptcp });
      const dl = download(topo.lab, topo.proxy, file.url, { socks5: ew.socks });
      const probe = mptcp && round === 0 && opts.onMptcpDownload ? delay(1000).then(opts.onMptcpDownload) : Promise.resolve();
      const [d] = await Promise.all([dl, probe]);
      runs.push({ mptcp, mbps: d.mbps, seconds: d.seconds, checksumOk: d.sha256 === file.sha256 && d.bytes === file.bytes });
      if (mptcp) best.mptcp = Math.max(best.mptcp, d.mbps);
      else best.tcp = Math.max(best.tcp, d.mbps);
    }
    if (opts.stopWhenRatio !== undefined && best.tcp > 0 && best.mptcp / best.tcp >= opts.stopWhenRatio) break;
  }
  return { tcpMbps: best.tcp, mptcpMbps: best.mptcp, ratio: best.tcp > 0 ? best.mptcp / best.tcp : 0, runs };
}
