// The network lab's topology: throw-away network namespaces joined by veth pairs shaped with tc tbf,
// with addresses, routes, sysctls and MPTCP endpoints. Everything a Lab creates (namespaces, the
// processes running in them, temporary directories) is removed by destroy(), and by a synchronous
// process-exit / signal hook if the process dies before it gets there. Traffic never leaves the lab:
// veth pairs are created directly inside the lab's namespaces and only private addresses (and the
// never-routed documentation ranges, for a lab's "public" side) are allowed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HarnessError, onExit, run, startProcess, type ExecOptions, type ExecResult, type RunningProcess, type SpawnOptions } from './process.js';

/** Linux IFNAMSIZ - 1: the longest interface name the kernel takes. */
const MAX_IFNAME = 15;

export interface Netns {
  /** the name given to `ip netns` */
  readonly name: string;
  /** what it stands for in the topology: proxy, server, router, ... */
  readonly role: string;
}

export interface LinkOptions {
  /** address of side A with prefix, e.g. 10.248.1.1/24 (private or RFC 5737 documentation ranges only) */
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

/**
 * Private ranges, and the IPv4 documentation ranges (RFC 5737: 192.0.2/24, 198.51.100/24,
 * 203.0.113/24), which are never routed on the Internet: a lab's "public" side (the WAN of a NAT,
 * a TURN server that must not look private) takes its addresses from them.
 */
function isLabAddress(ip: string): boolean {
  if (ip.includes(':')) return /^f[cd][0-9a-f]{2}:/i.test(ip);
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return false;
  const [a, b, c] = p as [number, number, number, number];
  const documentation = (a === 192 && b === 0 && c === 2) || (a === 198 && b === 51 && c === 100) || (a === 203 && b === 0 && c === 113);
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || documentation;
}

function parseCidr(cidr: string): string {
  const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(cidr);
  if (!m || !isLabAddress(m[1]!)) throw new HarnessError('invalid', `"${cidr}" is not a private or documentation address with prefix (10/8, 172.16/12, 192.168/16, 192.0.2/24, 198.51.100/24, 203.0.113/24, fc00::/7)`);
  return m[1]!;
}

function checkIfname(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) || name.length > MAX_IFNAME) throw new HarnessError('invalid', `interface name "${name}" must be 1..${MAX_IFNAME} characters [A-Za-z0-9_.-]`);
  return name;
}

/** Sizes tbf for `rateMbit`: a burst of at least 64 KiB (a GSO packet) or 5 ms, a 50 ms queue. */
export function tbfArgs(rateMbit: number): string[] {
  if (!(rateMbit > 0 && rateMbit <= 100_000)) throw new HarnessError('invalid', `rateMbit ${rateMbit} is out of range`);
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

onExit(() => {
  for (const lab of [...liveLabs]) lab.destroySync();
});

/**
 * A set of network namespaces and what runs in them. Names are unique per process and run
 * (`ew<pid>x<counter>-<role>`); interfaces are created inside the namespaces, never in the host's.
 */
export class Lab {
  readonly id: string;
  private readonly namespaces: Netns[] = [];
  private readonly processes: RunningProcess[] = [];
  private readonly tempDirs: string[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private readonly linkCount = new Map<string, number>();
  private destroying: Promise<void> | null = null;

  constructor() {
    this.id = `ew${process.pid}x${++labCounter}`;
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
    if (this.destroying) throw new HarnessError('destroyed', `lab ${this.id} is destroyed`);
  }

  /** Refuses namespaces this lab did not create: a lab only ever touches its own. */
  private own(ns: Netns): Netns {
    if (!this.namespaces.includes(ns)) throw new HarnessError('invalid', `namespace ${ns.name} does not belong to lab ${this.id}`);
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
    if (!/^[a-z][a-z0-9]{0,15}$/.test(role)) throw new HarnessError('invalid', `role "${role}" must be 1..16 of [a-z0-9], starting with a letter`);
    if (this.namespaces.some((n) => n.role === role)) throw new HarnessError('invalid', `lab ${this.id} already has a "${role}" namespace`);
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
    if (a.name === b.name) throw new HarnessError('invalid', 'a link needs two different namespaces');
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
  spawn(ns: Netns, argv: string[], opts: SpawnOptions = {}): RunningProcess {
    this.alive();
    const proc = startProcess(['ip', 'netns', 'exec', this.own(ns).name, ...argv], opts);
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
    if (!/^net\.[\w.-]+$/.test(key)) throw new HarnessError('invalid', `sysctl "${key}": only per-namespace net.* keys are allowed`);
    return this.exec(ns, ['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /**
   * Blackholes `dev` in `ns` (nftables drops everything in and out of it, the link stays up: no
   * carrier loss to react to), or ends that.
   */
  async blackhole(ns: Netns, dev: string, on: boolean): Promise<ExecResult> {
    const table = `lab_blackhole_${checkIfname(dev).replace(/[^A-Za-z0-9_]/g, '_')}`;
    if (!on) return this.exec(ns, ['nft', 'delete', 'table', 'inet', table]);
    const rules = `table inet ${table} {\n chain in { type filter hook input priority -300; iifname "${dev}" drop; }\n chain out { type filter hook output priority -300; oifname "${dev}" drop; }\n}\n`;
    return this.exec(ns, ['nft', '-f', '-'], { input: rules });
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
    if (problems.length > 0) throw new HarnessError('cleanup_failed', problems.join('; '));
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

