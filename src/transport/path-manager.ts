// edgeward's own MPTCP path manager: for the connections whose policy says pathManager
// "ndiffports" or "fullmesh", the socket is opened under the kernel's userspace path manager and
// this module makes its subflows, per connection, through the mptcp_pm netlink family
// (kernel/mptcp-pm.ts): N subflows over the same pair of addresses with different source ports
// (ndiffports: what spreads one connection over ECMP links), or one from every uplink to every
// address of the peer (fullmesh). Subflows from a `backup` uplink carry the backup flag (MP_PRIO).
// Lost subflows are made again with bounded backoff while the connection lives.
//
// One per thread (the thread that owns the sockets). It acts only on the connections it adopted,
// known by their token: connections under the kernel's path manager, and those of another
// userspace path manager (mptcpd, ...), get no command from it.
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { thePlane, type FdHandler } from '../kernel/epoll-plane.js';
import { EPOLLIN, subflowCounters } from '../kernel/fdio.js';
import { MPTCP_PM_ADDR_FLAG_BACKUP, MptcpPm, type MptcpEvent, type PmAddress } from '../kernel/mptcp-pm.js';
import type { GenlSocket } from '../kernel/netlink.js';
import { RouteLookup } from '../kernel/route-lookup.js';
import { getMptcpInfo, KernelError } from '../kernel/sockopt.js';
import { MAX_SUBFLOWS, type OwnPathManager, type Transport } from '../policy/types.js';

/** ndiffports' subflows when the policy does not say */
export const DEFAULT_SUBFLOWS = 2;
/** the first wait before making a lost or failed subflow again; doubled per failure up to RETRY_MAX_MS */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 8000;
/** a subflow that lived this long before it was lost counts as having worked: the backoff starts over */
const STABLE_MS = 10_000;
/**
 * With backup subflows: how often the others are checked for a silent path, and how often a fresh
 * subflow is tried on a path whose subflow went silent. The old subflow waits for its next
 * retransmission (seconds apart in backoff) before it notices the path is back; a new one comes
 * up within a round trip of it, and the traffic leaves the backup.
 */
const PROBE_MS = 1000;
/**
 * A subflow's path counts as silent when it is in retransmission backoff (it sends and hears
 * nothing back), or when it has received nothing for SILENT_RECV_MS while a backup subflow received
 * within the last second (the peer sends, and has moved its traffic to the backup).
 */
const SILENT_BACKOFF = 2;
const SILENT_RECV_MS = 1000;
/** how often adopted connections are checked against their fds (a closed event lost in an overflow) */
const SWEEP_MS = 10_000;
/** ndiffports: random source ports whose routes are asked for, to learn how many paths a flow to the peer can take */
const PATH_PROBES = 16;
/** ndiffports: random source ports tried for one subflow, to find one whose flow takes the wanted path */
const PORT_TRIES = 64;
/** where chosen source ports come from: the top of the ephemeral range, clear of most listeners */
const PORT_FIRST = 40000;
const PORT_LAST = 60999;

function randomPort(): number {
  return PORT_FIRST + Math.floor(Math.random() * (PORT_LAST - PORT_FIRST + 1));
}

/** tokens of connections seen fully established before they were adopted (the event came first) */
const RECENT_ESTABLISHED = 1024;

/** One uplink of the gateway, for fullmesh: a local address, the device to bind its subflows to, or a device whose addresses count. */
export interface Uplink {
  address?: string;
  device?: string;
}

/** What a connection's policy asks of the path manager. */
export interface PathPlan {
  mode: OwnPathManager;
  /** ndiffports: subflows in all, the initial one included */
  subflows: number;
  /** devices or addresses whose subflows carry the backup flag */
  backup: readonly string[];
}

/** The plan of a transport whose pathManager is one of edgeward's own. */
export function planOf(t: Transport, mode: OwnPathManager): PathPlan {
  return { mode, subflows: t.subflows ?? DEFAULT_SUBFLOWS, backup: t.backup ?? [] };
}

/** One subflow as the connection record shows it. */
export interface SubflowView {
  local: { address: string; port: number };
  remote: { address: string; port: number };
  backup: boolean;
  /** bytes this subflow carried: sent and acknowledged, received (where the kernel reports them) */
  bytes?: { sent: number; received: number };
}

/** What the path manager did for one connection (the connection record's inEffect.pathManager). */
export interface PathManagerView {
  mode: OwnPathManager;
  subflowsWanted: number;
  subflowsUp: number;
  /** subflows asked of the kernel and not yet established or failed */
  subflowsPending: number;
  subflows: SubflowView[];
  /** subflows made again after one was lost or failed */
  recreated: number;
  /** the last thing that went wrong, when something did */
  lastError?: string;
}

interface Sub {
  local: { address: string; port: number };
  remote: { address: string; port: number };
  backup: boolean;
  /** Date.now() when it was established */
  since: number;
}

/** A pair of addresses the plan wants subflows on, and how many. */
interface Want {
  local: PmAddress;
  remote: PmAddress;
  count: number;
}

function subKey(la: string, lp: number, ra: string, rp: number): string {
  return `${la}|${lp}|${ra}|${rp}`;
}

function pairKey(la: string, ra: string, rp: number): string {
  return `${la}|${ra}|${rp}`;
}

/** A connection the path manager adopted. */
class Owned {
  readonly subs = new Map<string, Sub>();
  /** subflows asked for and not yet heard of, by pair */
  readonly pending = new Map<string, number>();
  /** addresses the peer announced, by its address id */
  readonly remotes = new Map<number, { address: string; port: number }>();
  /** subflows being closed on purpose (not made again) */
  readonly closing = new Set<string>();
  /** ndiffports: the paths (device/gateway) a flow to the peer can take; null until probed */
  paths: string[] | null = null;
  /** ndiffports: source ports chosen for subflows asked for and not yet heard of, with their path */
  readonly pickedPorts = new Map<number, string>();
  /** the next local address id for a subflow with a chosen port (the kernel wants one id per address and port) */
  nextLocalId = 1;
  /** a fresh subflow tried on a silent path, by pair: its chosen port, until it comes up or fails */
  readonly probes = new Map<string, { local: PmAddress; remote: PmAddress }>();
  established = false;
  failures = 0;
  recreated = 0;
  retry: NodeJS.Timeout | null = null;
  lastError?: string;
  backupAddresses: Set<string>;

  constructor(
    readonly token: number,
    readonly fd: number,
    public plan: PathPlan,
    readonly initialLocal: { address: string; port: number },
    readonly initialRemote: { address: string; port: number },
  ) {
    this.backupAddresses = resolveBackup(plan.backup);
    this.subs.set(subKey(initialLocal.address, initialLocal.port, initialRemote.address, initialRemote.port), {
      local: initialLocal,
      remote: initialRemote,
      backup: false,
      since: Date.now(),
    });
  }
}

/** The addresses of the devices and addresses named in a backup list, as they are now. */
function resolveBackup(entries: readonly string[]): Set<string> {
  const out = new Set<string>();
  if (entries.length === 0) return out;
  const ifs = networkInterfaces();
  for (const e of entries) {
    if (isIP(e)) out.add(e);
    else for (const a of ifs[e] ?? []) out.add(a.address);
  }
  return out;
}

/** The index of a network device (for a subflow bound to it); undefined when there is none by that name. */
function ifIndexOf(device: string): number | undefined {
  try {
    const n = Number(readFileSync(`/sys/class/net/${device}/ifindex`, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class PathManager {
  private pm: MptcpPm | null = null;
  private events: GenlSocket | null = null;
  private unavailable: string | null = null;
  private routes: RouteLookup | null = null;
  private readonly owned = new Map<number, Owned>();
  private readonly recentEstablished = new Set<number>();
  private sweep: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private uplinks: Uplink[] = [];
  private readonly handler: FdHandler = { onEvent: () => this.drain() };

  /** The gateway's uplinks (--uplinks): fullmesh makes a subflow from each. */
  configure(o: { uplinks: Uplink[] }): void {
    this.uplinks = o.uplinks;
  }

  /**
   * Opens the netlink sockets on first use (CAP_NET_ADMIN); null when ready, else why the path
   * manager cannot work here (the connection then keeps the kernel's path manager). Call it before
   * the connect, so that no event of the new connection comes before the subscription.
   */
  prepare(): string | null {
    if (this.events) return null;
    if (this.unavailable !== null) return this.unavailable;
    try {
      this.pm = MptcpPm.open();
      this.events = this.pm.openEvents();
      this.routes = new RouteLookup();
      thePlane().watch(this.events.fd, this.handler, EPOLLIN, { keepsAlive: false });
      return null;
    } catch (e) {
      this.events?.close();
      this.events = null;
      this.routes?.close();
      this.routes = null;
      this.pm?.close();
      this.pm = null;
      this.unavailable = `edgeward's path manager is unavailable: ${e instanceof KernelError ? `${e.message}${e.code === 'EPERM' ? ' (it needs CAP_NET_ADMIN)' : ''}` : describe(e)}`;
      return this.unavailable;
    }
  }

  /**
   * Takes a connected MPTCP socket (opened under the userspace path manager, after prepare) into
   * the path manager's care. Returns why it did not (the peer fell back to TCP), or null.
   */
  adopt(fd: number, plan: PathPlan, local: { address: string; port: number }, remote: { address: string; port: number }): string | null {
    if (!this.pm) return 'path manager not prepared';
    const info = getMptcpInfo(fd);
    if (!info || info.fallback || info.token === 0) return 'peer does not speak MPTCP: no subflows to add';
    const o = new Owned(info.token, fd, plan, local, remote);
    this.owned.set(o.token, o);
    if (!this.sweep) this.sweep = setInterval(() => this.sweepClosed(), SWEEP_MS).unref();
    if (plan.backup.length > 0 && !this.watchdog) this.watchdog = setInterval(() => this.probeSilentPaths(), PROBE_MS).unref();
    if (this.recentEstablished.delete(o.token)) this.onEstablished(o);
    return null;
  }

  /** What the path manager did for the connection on `fd` (its token as MPTCP_INFO gives it); null when it does not manage it. */
  view(fd: number, token: number): PathManagerView | null {
    const o = this.owned.get(token);
    if (!o || o.fd !== fd) return null;
    if (!o) return null;
    let pending = 0;
    for (const n of o.pending.values()) pending += n;
    const counters = new Map(subflowCounters(fd).map((c) => [subKey(c.local.address, c.local.port, c.remote.address, c.remote.port), c]));
    const v: PathManagerView = {
      mode: o.plan.mode,
      subflowsWanted: this.wanted(o).reduce((n, w) => n + w.count, 0),
      subflowsUp: o.subs.size,
      subflowsPending: pending,
      subflows: [...o.subs.values()].map((s) => {
        const sv: SubflowView = { local: { ...s.local }, remote: { ...s.remote }, backup: s.backup };
        const c = counters.get(subKey(s.local.address, s.local.port, s.remote.address, s.remote.port));
        if (c) sv.bytes = { sent: c.bytesAcked, received: c.bytesReceived };
        return sv;
      }),
      recreated: o.recreated,
    };
    if (o.lastError !== undefined) v.lastError = o.lastError;
    return v;
  }

  /**
   * Applies a changed plan to the open connection on `fd`: more or fewer subflows, backup flags.
   * Returns what could not be done; null when the path manager does not manage that connection.
   */
  reapply(fd: number, plan: PathPlan): string[] | null {
    const o = this.ownedBy(fd);
    if (!o) return null;
    const failures: string[] = [];
    o.plan = plan;
    o.backupAddresses = resolveBackup(plan.backup);
    if (plan.backup.length > 0 && !this.watchdog) this.watchdog = setInterval(() => this.probeSilentPaths(), PROBE_MS).unref();
    if (!o.established) return failures;
    for (const [key, s] of o.subs) {
      const backup = o.backupAddresses.has(s.local.address);
      if (backup === s.backup) continue;
      try {
        this.pm!.setBackup(o.token, { ip: s.local.address, port: s.local.port }, { ip: s.remote.address, port: s.remote.port }, backup);
        s.backup = backup;
      } catch (e) {
        failures.push(`backup flag of subflow ${key}: ${describe(e)}`);
      }
    }
    this.trim(o, failures);
    this.fill(o);
    return failures;
  }

  /** Forgets everything and closes the netlink sockets (the thread's service stops). */
  close(): void {
    for (const o of this.owned.values()) if (o.retry) clearTimeout(o.retry);
    this.owned.clear();
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = null;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (this.events) {
      thePlane().unwatch(this.events.fd, this.handler);
      this.events.close();
      this.events = null;
    }
    this.pm?.close();
    this.pm = null;
    this.routes?.close();
    this.routes = null;
  }

  private ownedBy(fd: number): Owned | undefined {
    if (this.owned.size === 0) return undefined;
    const info = getMptcpInfo(fd);
    if (!info || info.token === 0) return undefined;
    const o = this.owned.get(info.token);
    return o && o.fd === fd ? o : undefined;
  }

  /** The subflows the plan wants now, by pair of addresses. */
  private wanted(o: Owned): Want[] {
    const remote = { ip: o.initialRemote.address, port: o.initialRemote.port };
    if (o.plan.mode === 'ndiffports') {
      return [{ local: { ip: o.initialLocal.address }, remote, count: Math.min(Math.max(o.plan.subflows, 1), MAX_SUBFLOWS) }];
    }
    // fullmesh: every uplink of the remote's family to every address of the peer; the initial
    // subflow counts for its own pair whether or not its address is an uplink
    const v6 = o.initialRemote.address.includes(':');
    const remotes = [remote, ...[...o.remotes.values()].map((r) => ({ ip: r.address, port: r.port }))];
    const out = new Map<string, Want>();
    out.set(pairKey(o.initialLocal.address, remote.ip, remote.port), { local: { ip: o.initialLocal.address }, remote, count: 1 });
    for (const u of this.localEndpoints(v6)) {
      for (const r of remotes) {
        const k = pairKey(u.address, r.ip, r.port ?? remote.port);
        if (out.has(k) || out.size >= MAX_SUBFLOWS) continue;
        out.set(k, { local: u.ifIndex !== undefined ? { ip: u.address, ifIndex: u.ifIndex } : { ip: u.address }, remote: { ip: r.ip, port: r.port ?? remote.port }, count: 1 });
      }
    }
    return [...out.values()];
  }

  /** The uplinks' addresses of one family, with the device to bind to where one was named with the address. */
  private localEndpoints(v6: boolean): { address: string; ifIndex?: number }[] {
    const out: { address: string; ifIndex?: number }[] = [];
    for (const u of this.uplinks) {
      if (u.address !== undefined) {
        if (u.address.includes(':') !== v6) continue;
        const ifIndex = u.device !== undefined ? ifIndexOf(u.device) : undefined;
        out.push(ifIndex !== undefined ? { address: u.address, ifIndex } : { address: u.address });
        continue;
      }
      for (const a of networkInterfaces()[u.device!] ?? []) {
        if ((a.family === 'IPv6') !== v6 || a.internal || a.address.startsWith('fe80:')) continue;
        out.push({ address: a.address });
      }
    }
    return out;
  }

  /** Asks for the subflows the plan wants and the connection lacks; returns how many it asked for. */
  private fill(o: Owned): number {
    let asked = 0;
    if (!o.established || !this.owned.has(o.token)) return asked;
    for (const w of this.wanted(o)) {
      const k = pairKey(w.local.ip, w.remote.ip, w.remote.port ?? 0);
      let have = o.pending.get(k) ?? 0;
      for (const s of o.subs.values()) if (pairKey(s.local.address, s.remote.address, s.remote.port) === k) have++;
      for (; have < w.count; have++) {
        const flags = o.backupAddresses.has(w.local.ip) ? MPTCP_PM_ADDR_FLAG_BACKUP : 0;
        // ndiffports on equal-cost multipath: a source port whose flow hashes to the least used path
        const picked = o.plan.mode === 'ndiffports' ? this.pickPort(o, w) : null;
        try {
          try {
            this.pm!.createSubflow(o.token, picked ? { ...w.local, flags, port: picked.port, id: picked.id } : { ...w.local, flags }, w.remote);
            if (picked) o.pickedPorts.set(picked.port, picked.path);
          } catch (e) {
            if (!picked) throw e;
            this.pm!.createSubflow(o.token, { ...w.local, flags }, w.remote); // the port was taken: any port
          }
          o.pending.set(k, (o.pending.get(k) ?? 0) + 1);
          asked++;
        } catch (e) {
          o.lastError = `subflow ${w.local.ip} -> ${w.remote.ip}:${w.remote.port}: ${describe(e)}`;
          this.retryLater(o);
          return asked;
        }
      }
    }
    return asked;
  }

  /**
   * For one more ndiffports subflow: a source port (and a local address id for it) whose 5-tuple the
   * kernel routes over the path the connection's subflows use least; null where the routes offer one
   * path only (or the lookups fail): the kernel then picks the port.
   */
  private pickPort(o: Owned, w: Want): { port: number; id: number; path: string } | null {
    const routes = this.routes;
    if (!routes || o.nextLocalId > 255) return null;
    const src = w.local.ip;
    const dst = w.remote.ip;
    const dport = w.remote.port ?? 0;
    if (o.paths === null) {
      const seen = new Set<string>();
      for (let i = 0; i < PATH_PROBES; i++) {
        const p = routes.pathOf(src, dst, randomPort(), dport);
        if (p !== null) seen.add(p);
      }
      o.paths = [...seen];
    }
    if (o.paths.length < 2) return null;
    const use = new Map<string, number>(o.paths.map((p) => [p, 0]));
    for (const sub of o.subs.values()) {
      const p = routes.pathOf(sub.local.address, sub.remote.address, sub.local.port, sub.remote.port);
      if (p !== null && use.has(p)) use.set(p, use.get(p)! + 1);
    }
    for (const p of o.pickedPorts.values()) if (use.has(p)) use.set(p, use.get(p)! + 1);
    const target = [...use.entries()].sort((a, b) => a[1] - b[1])[0]![0];
    for (let i = 0; i < PORT_TRIES; i++) {
      const port = randomPort();
      if (o.pickedPorts.has(port)) continue;
      if (routes.pathOf(src, dst, port, dport) === target) return { port, id: o.nextLocalId++, path: target };
    }
    return null;
  }

  /** Closes the subflows beyond what a smaller plan wants (ndiffports' count went down). */
  private trim(o: Owned, failures: string[]): void {
    if (o.plan.mode !== 'ndiffports') return;
    const want = Math.min(Math.max(o.plan.subflows, 1), MAX_SUBFLOWS);
    const extra = [...o.subs.entries()].filter(([k]) => !o.closing.has(k)).slice(1); // never the initial subflow
    for (let i = 0; o.subs.size - o.closing.size > want && i < extra.length; i++) {
      const [key, s] = extra[extra.length - 1 - i]!;
      try {
        o.closing.add(key);
        this.pm!.destroySubflow(o.token, { ip: s.local.address, port: s.local.port }, { ip: s.remote.address, port: s.remote.port });
      } catch (e) {
        o.closing.delete(key);
        failures.push(`closing subflow ${key}: ${describe(e)}`);
      }
    }
  }

  private retryLater(o: Owned): void {
    if (o.retry) return;
    const ms = Math.min(RETRY_FIRST_MS * 2 ** o.failures, RETRY_MAX_MS);
    o.failures++;
    o.retry = setTimeout(() => {
      o.retry = null;
      o.recreated += this.fill(o);
    }, ms);
    o.retry.unref();
  }

  private onEstablished(o: Owned): void {
    if (o.established) return;
    o.established = true;
    const first = [...o.subs.values()][0];
    if (first && o.backupAddresses.has(first.local.address)) {
      try {
        this.pm!.setBackup(o.token, { ip: first.local.address, port: first.local.port }, { ip: first.remote.address, port: first.remote.port }, true);
        first.backup = true;
      } catch (e) {
        o.lastError = `backup flag of the first subflow: ${describe(e)}`;
      }
    }
    this.fill(o);
  }

  private drain(): void {
    const events = this.events;
    const pm = this.pm;
    if (!events || !pm) return;
    const rc = pm.receiveEvents(events, (e) => this.onEvent(e));
    // edge-triggered: what is left after a bounded batch gets no new edge; take it after the others
    if (rc === 1) thePlane().soon(() => this.drain());
    if (rc < 0) {
      // ENOBUFS: events were lost; the sweep finds the connections that closed meanwhile
      this.sweepClosed();
    }
  }

  private onEvent(e: MptcpEvent): void {
    if (e.token === undefined) return;
    const o = this.owned.get(e.token);
    if (!o) {
      if (e.type === 'established' && !e.serverSide) {
        if (this.recentEstablished.size >= RECENT_ESTABLISHED) this.recentEstablished.delete(this.recentEstablished.values().next().value!);
        this.recentEstablished.add(e.token);
      } else if (e.type === 'closed') this.recentEstablished.delete(e.token);
      return;
    }
    switch (e.type) {
      case 'established':
        this.onEstablished(o);
        break;
      case 'sub_established': {
        if (e.saddr === undefined || e.daddr === undefined || e.sport === undefined || e.dport === undefined) return;
        const k = pairKey(e.saddr, e.daddr, e.dport);
        const p = o.pending.get(k) ?? 0;
        if (p > 0) o.pending.set(k, p - 1);
        o.pickedPorts.delete(e.sport);
        const probe = o.probes.get(k);
        if (probe && probe.local.port === e.sport) {
          // the path is back: the fresh subflow stays, the silent ones on that pair go
          o.probes.delete(k);
          for (const [key, s] of o.subs) {
            if (s.backup || pairKey(s.local.address, s.remote.address, s.remote.port) !== k) continue;
            try {
              o.closing.add(key);
              this.pm!.destroySubflow(o.token, { ip: s.local.address, port: s.local.port }, { ip: s.remote.address, port: s.remote.port });
            } catch {
              o.closing.delete(key);
            }
          }
          o.recreated++;
        }
        o.subs.set(subKey(e.saddr, e.sport, e.daddr, e.dport), { local: { address: e.saddr, port: e.sport }, remote: { address: e.daddr, port: e.dport }, backup: e.backup === true || o.backupAddresses.has(e.saddr), since: Date.now() });
        break;
      }
      case 'sub_closed': {
        if (e.saddr === undefined || e.daddr === undefined || e.sport === undefined || e.dport === undefined) return;
        const key = subKey(e.saddr, e.sport, e.daddr, e.dport);
        const sub = o.subs.get(key);
        o.subs.delete(key);
        // closed on purpose: a smaller plan, a silent subflow replaced, a fresh try given up (one
        // still connecting is reported without its remote port: matched by its local address and port)
        if (o.closing.delete(key)) return;
        const local = `${e.saddr}|${e.sport}|`;
        for (const c of o.closing) {
          if (!c.startsWith(local)) continue;
          o.closing.delete(c);
          return;
        }
        if (sub) {
          // one that worked for a while starts the backoff over; one the peer drops at once (it
          // refuses joins beyond its limit) keeps it growing
          if (Date.now() - sub.since >= STABLE_MS) o.failures = 0;
          o.lastError = `subflow ${e.saddr}:${e.sport} -> ${e.daddr}:${e.dport} lost${e.error ? ` (errno ${e.error})` : ''}`;
        } else {
          // a subflow asked for that never came up
          o.pickedPorts.delete(e.sport);
          const k = pairKey(e.saddr, e.daddr, e.dport);
          const p = o.pending.get(k) ?? 0;
          if (p > 0) o.pending.set(k, p - 1);
          o.lastError = `subflow ${e.saddr} -> ${e.daddr}:${e.dport} failed${e.error ? ` (errno ${e.error})` : ''}`;
        }
        this.retryLater(o);
        break;
      }
      case 'sub_priority': {
        if (e.saddr === undefined || e.daddr === undefined || e.sport === undefined || e.dport === undefined) return;
        const s = o.subs.get(subKey(e.saddr, e.sport, e.daddr, e.dport));
        if (s && e.backup !== undefined) s.backup = e.backup;
        break;
      }
      case 'announced':
        if (e.remId !== undefined && e.daddr !== undefined) {
          o.remotes.set(e.remId, { address: e.daddr, port: e.dport ?? o.initialRemote.port });
          if (o.plan.mode === 'fullmesh') this.fill(o);
        }
        break;
      case 'removed':
        if (e.remId !== undefined) o.remotes.delete(e.remId);
        break;
      case 'closed':
        this.release(o);
        break;
      default:
        break;
    }
  }

  private release(o: Owned): void {
    if (o.retry) clearTimeout(o.retry);
    o.retry = null;
    this.owned.delete(o.token);
    if (this.owned.size === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
    if (this.watchdog && ![...this.owned.values()].some((x) => x.plan.backup.length > 0)) {
      clearInterval(this.watchdog);
      this.watchdog = null;
    }
  }

  /**
   * For connections with backup subflows: a non-backup subflow whose path went silent (in
   * retransmission backoff) gets a fresh subflow tried beside it on the same pair, once a PROBE_MS,
   * the last try closed first. When one comes up, the silent one is closed: the traffic is back off
   * the backup within about a second of the path's return.
   */
  private probeSilentPaths(): void {
    for (const o of this.owned.values()) {
      if (!o.established || o.plan.backup.length === 0) continue;
      const counters = new Map(subflowCounters(o.fd).map((c) => [subKey(c.local.address, c.local.port, c.remote.address, c.remote.port), c]));
      const silentPairs = new Map<string, Sub>();
      const healthy = new Set<string>();
      let backupReceiving = false;
      for (const [key, s] of o.subs) {
        const c = counters.get(key);
        if (s.backup && c && c.lastDataRecvMs < 1000) backupReceiving = true;
      }
      for (const [key, s] of o.subs) {
        if (s.backup || o.closing.has(key)) continue;
        const pk = pairKey(s.local.address, s.remote.address, s.remote.port);
        const c = counters.get(key);
        const silent = c !== undefined && (c.backoff >= SILENT_BACKOFF || (backupReceiving && c.lastDataRecvMs >= SILENT_RECV_MS));
        if (silent) silentPairs.set(pk, s);
        else healthy.add(pk);
      }
      for (const [pk, probe] of o.probes) {
        // the last try: closed before the next (it is still in its SYN's backoff), or no longer needed
        const key = subKey(probe.local.ip, probe.local.port ?? 0, probe.remote.ip, probe.remote.port ?? 0);
        o.closing.add(key);
        try {
          this.pm!.destroySubflow(o.token, probe.local, probe.remote);
        } catch {
          o.closing.delete(key); // it failed or finished meanwhile
        }
        o.probes.delete(pk);
      }
      for (const [pk, s] of silentPairs) {
        if (healthy.has(pk) || o.nextLocalId > 255) continue;
        const probe = { local: { ip: s.local.address, port: randomPort(), id: o.nextLocalId++ }, remote: { ip: s.remote.address, port: s.remote.port } };
        try {
          this.pm!.createSubflow(o.token, probe.local, probe.remote);
          o.probes.set(pk, probe);
        } catch (e) {
          o.lastError = `fresh subflow beside a silent one (${s.local.address} -> ${s.remote.address}): ${describe(e)}`;
        }
      }
    }
  }

  /** Forgets adopted connections whose fd no longer holds them (closed; the fd number maybe reused). */
  private sweepClosed(): void {
    for (const o of [...this.owned.values()]) {
      const info = getMptcpInfo(o.fd);
      if (!info || info.token !== o.token) this.release(o);
    }
  }
}

let manager: PathManager | null = null;

/** This thread's path manager (made on first use). */
export function thePathManager(): PathManager {
  manager ??= new PathManager();
  return manager;
}
