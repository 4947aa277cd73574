// The lab for the shield (DoS protection): an attacker and a legitimate client on two WAN links of
// the shield, and behind it the backend the attacks aim at.
//
// router mode:
//   attacker 10.250.1.2 eth0 --- wan0 10.250.1.1 \
//                                                 shield  lan0 10.250.3.1 --- eth0 10.250.3.2 backend
//   legit    10.250.2.2 eth0 --- wan1 10.250.2.1 /
//   (and fd00:250:1::/64, fd00:250:2::/64, fd00:250:3::/64 alike: ::1 the shield, ::2 the other end)
//
// host mode: no backend namespace; the services run in the shield namespace itself, on a service
// address of its own (10.250.0.1/32 and fd00:250::1/128 on its lo) that both WAN sides
// reach through their default routes.
//
// The shield's default routes point to the attacker: SYN-ACKs (and any other answer) to spoofed
// random sources go back into the attacker namespace, which does not forward, and die there. The
// legit prefix is on wan1 (directly connected). The attacker, legit and backend have their default
// routes via the shield. Only private addresses are used (10.250.0.0/16, fd00:250::/32).
//
// The backend (the shield in host mode) is tuned so that an unprotected SYN flood really hurts
// (LAB-NOTES): no SYN cookies, no TCP metrics saved (else the kernel keeps part of the SYN queue for
// peers it remembers and a reconnecting test client sails through), and the listeners' backlog is 16.
import { fileURLToPath } from 'node:url';
import type { Lab, Link, Netns } from './netns.js';
import { HarnessError, sleep, waitFor, type RunningProcess } from './process.js';

/** The servers and clients of test/lab/fixtures/shield-load.mjs. */
export const SHIELD_LOAD = fileURLToPath(new URL('../lab/fixtures/shield-load.mjs', import.meta.url));
/** The listen backlog of the backend servers. */
const BACKEND_BACKLOG = 16;

export type ShieldMode = 'router' | 'host';

/** The clients' addresses, by role. */
export interface ShieldAddrs {
  attacker: string;
  legit: string;
}

export interface ShieldLab {
  mode: ShieldMode;
  attacker: Netns;
  legit: Netns;
  shield: Netns;
  /** router mode: its own namespace; host mode: the shield namespace (backend === shield) */
  backend: Netns;
  /** IPv4 addresses of the clients */
  addr: ShieldAddrs;
  /** IPv6 addresses of the clients */
  addr6: ShieldAddrs;
  /** the shield's interfaces: to the attacker (wan0) and to the legit client (wan1) */
  ifname: { wan0: 'wan0'; wan1: 'wan1' };
  /** where the services listen: the backend's eth0 (router mode) or the shield's lo (host mode) */
  backendAddr: string;
  backendAddr6: string;
}

const NET4 = { attacker: '10.250.1', legit: '10.250.2', lan: '10.250.3' } as const;
const NET6 = { attacker: 'fd00:250:1:', legit: 'fd00:250:2:', lan: 'fd00:250:3:' } as const;
const SVC4 = '10.250.0.1';
const SVC6 = 'fd00:250::1';

/** Joins a and b by a veth pair with IPv4 .1 (a) / .2 (b) and adds the IPv6 ::1 / ::2 pair to the same interfaces. */
async function dualLink(lab: Lab, a: Netns, b: Netns, net4: string, net6: string, ifA: string, ifB: string): Promise<[Link, Link]> {
  const v4 = await lab.link(a, b, { addrA: `${net4}.1/24`, addrB: `${net4}.2/24`, ifA, ifB });
  // lab.link creates the pair; the IPv6 addresses go on the same interfaces (nodad: usable at once)
  await lab.ip(a, ['-6', 'addr', 'add', `${net6}:1/64`, 'dev', ifA, 'nodad']);
  await lab.ip(b, ['-6', 'addr', 'add', `${net6}:2/64`, 'dev', ifB, 'nodad']);
  const v6: Link = {
    a: { ns: a, ifname: ifA, cidr: `${net6}:1/64`, ip: `${net6}:1` },
    b: { ns: b, ifname: ifB, cidr: `${net6}:2/64`, ip: `${net6}:2` },
  };
  return [v4, v6];
}

/** tcp_syncookies in the namespace (the kernel's own SYN flood defence). */
export async function setSyncookies(lab: Lab, ns: Netns, on: boolean): Promise<void> {
  await lab.sysctl(ns, 'net.ipv4.tcp_syncookies', on ? 1 : 0);
}

/** Forgets every TCP peer the namespace remembers (`ip tcp_metrics flush all`): call it before a measurement. */
export async function flushTcpMetrics(lab: Lab, ns: Netns): Promise<void> {
  await lab.ip(ns, ['tcp_metrics', 'flush', 'all']);
}

/** No SYN cookies, no saved TCP metrics, none remembered: an unprotected SYN queue, as LAB-NOTES measures it. */
export async function tuneUnprotected(lab: Lab, ns: Netns): Promise<void> {
  await setSyncookies(lab, ns, false);
  await lab.sysctl(ns, 'net.ipv4.tcp_no_metrics_save', 1);
  await flushTcpMetrics(lab, ns);
}

/** Builds the topology above (router mode: four namespaces; host mode: three, the services in the shield). */
export async function buildShieldLab(lab: Lab, opts: { mode: ShieldMode }): Promise<ShieldLab> {
  const { mode } = opts;
  const attacker = await lab.addNamespace('attacker');
  const legit = await lab.addNamespace('legit');
  const shield = await lab.addNamespace('shield');
  const backend = mode === 'router' ? await lab.addNamespace('backend') : shield;
  const all = mode === 'router' ? [attacker, legit, shield, backend] : [attacker, legit, shield];
  // no duplicate address detection on the interfaces to come: a link-local address still tentative
  // delays neighbour discovery, and with it the first IPv6 connections, by seconds
  for (const ns of all) {
    await lab.sysctl(ns, 'net.ipv6.conf.default.accept_dad', 0);
    await lab.sysctl(ns, 'net.ipv6.conf.all.accept_dad', 0);
  }

  const [att4, att6] = await dualLink(lab, shield, attacker, NET4.attacker, NET6.attacker, 'wan0', 'eth0');
  const [leg4, leg6] = await dualLink(lab, shield, legit, NET4.legit, NET6.legit, 'wan1', 'eth0');
  let lan: [Link, Link] | null = null;
  if (mode === 'router') {
    lan = await dualLink(lab, shield, backend, NET4.lan, NET6.lan, 'lan0', 'eth0');
    await lab.sysctl(shield, 'net.ipv4.ip_forward', 1);
    await lab.sysctl(shield, 'net.ipv6.conf.all.forwarding', 1);
    await lab.ip(backend, ['route', 'add', 'default', 'via', lan[0].a.ip]);
    await lab.ip(backend, ['-6', 'route', 'add', 'default', 'via', lan[1].a.ip]);
  } else {
    // on lo: this kernel may have no dummy interfaces
    await lab.ip(shield, ['addr', 'add', `${SVC4}/32`, 'dev', 'lo']);
    await lab.ip(shield, ['-6', 'addr', 'add', `${SVC6}/128`, 'dev', 'lo', 'nodad']);
  }
  // answers to spoofed sources leave by wan0 and die in the attacker namespace (it does not forward)
  await lab.ip(shield, ['route', 'add', 'default', 'via', att4.b.ip, 'dev', 'wan0']);
  await lab.ip(shield, ['-6', 'route', 'add', 'default', 'via', att6.b.ip, 'dev', 'wan0']);
  for (const [ns, v4, v6] of [
    [attacker, att4, att6],
    [legit, leg4, leg6],
  ] as const) {
    await lab.ip(ns, ['route', 'add', 'default', 'via', v4.a.ip]);
    await lab.ip(ns, ['-6', 'route', 'add', 'default', 'via', v6.a.ip]);
  }
  await tuneUnprotected(lab, backend);
  for (const ns of all) {
    await waitFor(`no tentative IPv6 address in ${ns.name}`, async () => (await lab.ip(ns, ['-6', 'addr', 'show', 'tentative'])).stdout.trim() === '', 5000, 50);
  }

  return {
    mode,
    attacker,
    legit,
    shield,
    backend,
    addr: { attacker: att4.b.ip, legit: leg4.b.ip },
    addr6: { attacker: att6.b.ip, legit: leg6.b.ip },
    ifname: { wan0: 'wan0', wan1: 'wan1' },
    backendAddr: lan ? lan[0].b.ip : SVC4,
    backendAddr6: lan ? lan[1].b.ip : SVC6,
  };
}

export interface BackendPorts {
  /** request/response: reads a line, answers one, closes */
  tcp: number;
  /** writes a banner at once on accept */
  banner: number;
  /** UDP echo */
  udp: number;
  /** writes 8 MiB once the client sends anything, then closes (what zero-window readers stall) */
  big?: number;
}

/** Starts the backend servers (listen backlog 16 unless told) on backendAddr and backendAddr6 and waits until all of them listen. */
export async function startBackendServers(lab: Lab, sl: ShieldLab, ports: BackendPorts, opts: { backlog?: number } = {}): Promise<RunningProcess> {
  const proc = lab.spawn(sl.backend, [
    process.execPath,
    SHIELD_LOAD,
    'serve',
    '--host',
    sl.backendAddr,
    '--host',
    sl.backendAddr6,
    '--tcp',
    String(ports.tcp),
    '--banner',
    String(ports.banner),
    '--udp',
    String(ports.udp),
    ...(ports.big ? ['--big', String(ports.big)] : []),
    '--backlog',
    String(opts.backlog ?? BACKEND_BACKLOG),
  ]);
  await proc.waitForOutput(/^ready /m, 10_000);
  return proc;
}

// ---------------------------------------------------------------------------------------------
// Legitimate clients (shield-load.mjs)

export interface TcpLoadResult {
  attempts: number;
  ok: number;
  failures: Record<string, number>;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  elapsedMs: number;
}

export interface UdpLoadResult {
  sent: number;
  received: number;
  ratio: number;
  duplicates: number;
  rttP50Ms: number | null;
  rttP99Ms: number | null;
  /** how many runs of consecutive unanswered datagrams */
  lostRuns: number;
  /** the five longest of them, with when they were sent (ms after the first) */
  longestLost: Array<{ count: number; fromMs: number; toMs: number }>;
}

async function runLoad<T>(lab: Lab, ns: Netns, args: string[], timeoutMs: number): Promise<T> {
  const r = await lab.exec(ns, [process.execPath, SHIELD_LOAD, ...args], { timeoutMs });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new HarnessError('exec_failed', `shield-load ${args.join(' ')}: no JSON result; stdout: ${r.stdout.slice(-500)} stderr: ${r.stderr.slice(-1000)}`);
  }
}

export interface ConnLoadOptions {
  count?: number;
  concurrency?: number;
  deadlineMs?: number;
  /** no connection starts after this many seconds (0: no bound but the count) */
  seconds?: number;
}

function connArgs(o: ConnLoadOptions, defaults: Required<ConnLoadOptions>): { args: string[]; timeoutMs: number } {
  const c = { ...defaults, ...o };
  // a bound nothing reaches: every connection waiting for its full deadline, plus Node's start
  const rounds = Math.ceil(c.count / Math.max(1, c.concurrency)) * c.deadlineMs;
  const timeoutMs = (c.seconds > 0 ? Math.min(rounds, c.seconds * 1000 + c.deadlineMs) : rounds) + 15_000;
  return { args: ['--count', String(c.count), '--concurrency', String(c.concurrency), '--deadline-ms', String(c.deadlineMs), '--seconds', String(c.seconds)], timeoutMs };
}

/** `shield-load.mjs tcp`: the legitimate request/response client, run in `ns`. */
export async function legitTcp(lab: Lab, ns: Netns, host: string, port: number, o: ConnLoadOptions = {}): Promise<TcpLoadResult> {
  const { args, timeoutMs } = connArgs(o, { count: 1000, concurrency: 10, deadlineMs: 3000, seconds: 0 });
  return runLoad(lab, ns, ['tcp', host, String(port), ...args], timeoutMs);
}

/** `shield-load.mjs banner`: connect() to the banner's first byte. */
export async function legitBanner(lab: Lab, ns: Netns, host: string, port: number, o: ConnLoadOptions = {}): Promise<TcpLoadResult> {
  const { args, timeoutMs } = connArgs(o, { count: 100, concurrency: 1, deadlineMs: 3000, seconds: 0 });
  return runLoad(lab, ns, ['banner', host, String(port), ...args], timeoutMs);
}

export interface HoldResult {
  attempts: number;
  connected: number;
  failures: Record<string, number>;
  elapsedMs: number;
}

/**
 * `shield-load.mjs hold` in `ns`: a connection flood that keeps its connections for `seconds`.
 * Resolves once every connect has ended, with the number connected (from the client's side) and a
 * promise of the final result (when the connections are closed again).
 */
export async function connectionFlood(lab: Lab, ns: Netns, host: string, port: number, o: { count: number; concurrency: number; seconds: number; deadlineMs?: number }): Promise<{ connected: number; done: Promise<HoldResult> }> {
  const proc = lab.spawn(ns, [process.execPath, SHIELD_LOAD, 'hold', host, String(port), '--count', String(o.count), '--concurrency', String(o.concurrency), '--seconds', String(o.seconds), '--deadline-ms', String(o.deadlineMs ?? 3000)]);
  const m = await proc.waitForOutput(/^held (\d+)$/m, (o.seconds + 10) * 1000);
  const done = (async (): Promise<HoldResult> => {
    await proc.waitForOutput(/^\{.*\}$/m, (o.seconds + 10) * 1000);
    const line = proc.stdout().trim().split('\n').pop() ?? '';
    return JSON.parse(line) as HoldResult;
  })();
  done.catch(() => undefined);
  return { connected: Number(m[1]), done };
}

/** `shield-load.mjs udp`: numbered datagrams at `pps` for `seconds` to the echo server. */
export async function legitUdp(lab: Lab, ns: Netns, host: string, port: number, o: { pps?: number; seconds?: number; size?: number } = {}): Promise<UdpLoadResult> {
  const pps = o.pps ?? 100;
  const seconds = o.seconds ?? 5;
  return runLoad(lab, ns, ['udp', host, String(port), '--pps', String(pps), '--seconds', String(seconds), '--size', String(o.size ?? 64)], (seconds + 15) * 1000);
}

// ---------------------------------------------------------------------------------------------
// hping3

/** hping3's final statistics ("N packets transmitted, M packets received"), or null. */
function parseHpingStats(text: string): { transmitted: number; received: number } | null {
  const m = /(\d+) packets transmitted, (\d+) packets received/.exec(text);
  return m ? { transmitted: Number(m[1]), received: Number(m[2]) } : null;
}

/**
 * Runs `timeout --signal=INT SECONDS hping3 ARGS` in `ns` and resolves with the packets hping3
 * reports as sent. Never longer than seconds + 5: hping3 gets SIGINT at `seconds` (it prints its
 * statistics then), SIGKILL 3 s later. `signal` ends it early (SIGINT too).
 */
export async function hpingFlood(lab: Lab, ns: Netns, args: string[], seconds: number, opts: { signal?: AbortSignal } = {}): Promise<number> {
  return (await hping(lab, ns, args, seconds, opts.signal)).transmitted;
}

/**
 * A SYN flood from random sources at `host:port` (`floods` hping3 processes, default 1, `seconds`
 * at most) while the legit client makes 200 connections, 10 at a time, starting half a second in;
 * the flood stops when the client is done. Resolves with the client's result and the SYNs sent.
 */
export async function legitUnderSynFlood(lab: Lab, sl: ShieldLab, host: string, port: number, seconds: number, opts: { floods?: number } = {}): Promise<{ legit: TcpLoadResult; sent: number }> {
  const stop = new AbortController();
  const floods = Array.from({ length: opts.floods ?? 1 }, () => hpingFlood(lab, sl.attacker, ['--flood', '-S', '--rand-source', '-p', String(port), host], seconds, { signal: stop.signal }));
  let legit: TcpLoadResult;
  try {
    await sleep(500);
    legit = await legitTcp(lab, sl.legit, host, port, { count: 200, concurrency: 10 });
  } finally {
    stop.abort();
  }
  const sent = await Promise.all(floods);
  return { legit, sent: sent.reduce((a, b) => a + b, 0) };
}

/** Sends exactly `count` packets (`hping3 -q -c COUNT -i INTERVAL`, default u200: 5000/s) and resolves with the packets sent. */
export async function hpingCount(lab: Lab, ns: Netns, args: string[], count: number, opts: { interval?: string } = {}): Promise<number> {
  if (!Number.isInteger(count) || count < 1) throw new HarnessError('invalid', `hpingCount: count ${count}`);
  const interval = opts.interval ?? 'u200';
  const m = /^u(\d+)$/.exec(interval);
  const perPacketS = m ? Number(m[1]) / 1e6 : Number(interval);
  if (!(perPacketS > 0)) throw new HarnessError('invalid', `hpingCount: interval "${interval}" (u<microseconds> or seconds)`);
  // hping3 sleeps longer than asked: allow three times the nominal time, plus its wait for late replies
  const seconds = Math.ceil(count * perPacketS * 3) + 3;
  const r = await hping(lab, ns, ['-q', '-c', String(count), '-i', interval, ...args], seconds);
  return r.transmitted;
}

async function hping(lab: Lab, ns: Netns, args: string[], seconds: number, signal?: AbortSignal): Promise<{ transmitted: number; received: number }> {
  if (!(seconds > 0 && seconds <= 600)) throw new HarnessError('invalid', `hping3: ${seconds} s is out of range`);
  const proc = lab.spawn(ns, ['timeout', '--signal=INT', '--kill-after=3', String(seconds), 'hping3', ...args]);
  const abort = (): void => void proc.stop('SIGINT', 3000);
  if (signal?.aborted) abort();
  signal?.addEventListener('abort', abort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const bound = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), (seconds + 5) * 1000)));
    const exit = await Promise.race([proc.exited, bound]);
    if (exit === null) await proc.stop('SIGKILL', 1000);
    const stats = parseHpingStats(proc.stdout() + '\n' + proc.stderr());
    if (!stats) throw new HarnessError('exec_failed', `hping3 ${args.join(' ')} printed no statistics (exit ${JSON.stringify(proc.exitStatus)}): ${proc.stderr().slice(-1000)} ${proc.stdout().slice(-500)}`);
    return stats;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel counters

/** The counters of one line pair ("Udp:", "TcpExt:") of a /proc/net file (snmp, netstat) in `ns`, by name. */
async function procNetCounters(lab: Lab, ns: Netns, file: 'snmp' | 'netstat', prefix: string): Promise<Record<string, number>> {
  const r = await lab.exec(ns, ['cat', `/proc/net/${file}`]);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith(`${prefix}:`));
  const out: Record<string, number> = {};
  if (lines.length < 2) return out;
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1);
  names.forEach((n, i) => (out[n] = Number(values[i])));
  return out;
}

/** The Udp counters of /proc/net/snmp in `ns` (InDatagrams, NoPorts, InErrors, RcvbufErrors, ...). */
export function udpCounters(lab: Lab, ns: Netns): Promise<Record<string, number>> {
  return procNetCounters(lab, ns, 'snmp', 'Udp');
}

/** What grew from `before` to `after` (counters that did not move are left out). */
export function counterDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

/** The TcpExt counters of /proc/net/netstat in `ns` (TCPReqQFullDrop, SyncookiesSent, ListenDrops, ...). */
export function tcpExtCounters(lab: Lab, ns: Netns): Promise<Record<string, number>> {
  return procNetCounters(lab, ns, 'netstat', 'TcpExt');
}
