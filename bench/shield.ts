// `npm run bench -- --only shield`: the shield against what an operator would do instead, in the
// shield lab (router mode, test/helpers/shield-lab.ts: attacker and legit client on two WAN links,
// the backend behind the shield namespace). Each attack runs once per column, bounded:
//   SYN flood (hping3 --flood --rand-source)   none | the backend's own SYN cookies | edgeward (synproxy),
//                                              from one hping3 and from two
//   UDP flood from one source (hping3 --udp)   none | edgeward (per-source meter -> blocklist)
//   slowloris (slowhttptest -H) on nginx       none | edgeward (L4 proxy, TPROXY)
// and reports what the legitimate client got (served share, p99), what the attacker sent, where
// its packets went (the shield's counters, or the backend's TcpExt), the machine's CPU meanwhile
// (/proc/stat: it is one machine, so the attacker's sends are in it) and edgeward's own; and, from
// the kernel CPU per packet, how many cores the appliance's 37 Mpps would take at most.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEdgeward, type EdgewardInLab } from '../test/helpers/edgeward.js';
import { withLab, type Lab } from '../test/helpers/netns.js';
import { curlGets, nginxArgv, nginxConfig } from '../test/helpers/nginx.js';
import { sleep, waitFor } from '../test/helpers/process.js';
import { edgewardSkipReason, labSkipReason } from '../test/helpers/requirements.js';
import { buildShieldLab, hpingFlood, legitUdp, legitUnderSynFlood, setSyncookies, startBackendServers, tcpExtCounters, type ShieldLab } from '../test/helpers/shield-lab.js';

const PORTS = { tcp: 7001, banner: 7025, udp: 7053 };
const NGINX_PORT = 80;

export interface ShieldRow {
  attack: string;
  column: string;
  /** what the legit client got, e.g. "200/200 (100 %), p99 21 ms" */
  legit: string;
  /** served share 0..1 */
  share: number;
  /** what the attacker sent, e.g. "812,000 SYNs (81,200/s)" */
  attacker: string;
  /** where the attack's packets ended, by layer, e.g. "synproxy 812,000 answered" */
  layers: string;
  /** the machine's CPU while the attack went on: kernel (system + softirq) and edgeward's process */
  cpu: string;
  note: string;
  /** the attack's packets, the seconds it ran, the machine's kernel CPU seconds meanwhile */
  packets: number;
  seconds: number;
  kernelCpuS: number;
  /** edgeward's process CPU seconds meanwhile (null: not running) */
  edgewardCpuS: number | null;
}

export type ShieldResult = { rows: ShieldRow[]; extrapolation: string[] } | { skipped: string };

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
/** USER_HZ: the unit of /proc/stat and /proc/PID/stat */
const TICK_S = 0.01;

/** The machine's CPU seconds so far (/proc/stat's first line; not namespaced): user, kernel (system + irq + softirq), and all. */
function machineCpu(): { user: number; kernel: number; softirq: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = f;
  return { user: (user + nice) * TICK_S, kernel: (system + irq + softirq) * TICK_S, softirq: softirq * TICK_S };
}

/** A process's CPU seconds so far (utime + stime), or 0 when it is gone. */
function processCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S;
  } catch {
    return 0;
  }
}

/** Measures the machine's and a process's CPU around `run`. */
async function withCpu<T>(pid: number | null, run: () => Promise<T>): Promise<{ value: T; seconds: number; kernel: number; softirq: number; user: number; proc: number | null }> {
  const m0 = machineCpu();
  const p0 = pid === null ? 0 : processCpu(pid);
  const t0 = performance.now();
  const value = await run();
  const seconds = (performance.now() - t0) / 1000;
  const m1 = machineCpu();
  return { value, seconds, kernel: m1.kernel - m0.kernel, softirq: m1.softirq - m0.softirq, user: m1.user - m0.user, proc: pid === null ? null : processCpu(pid) - p0 };
}

type Counters = Record<string, number>;

/** The shield's counters, flat: flags_*, blocked_*, svc_NAME_* (GET /api/v1/shield). */
async function shieldCounters(ew: EdgewardInLab): Promise<Counters> {
  const r = await ew.api('GET', '/api/v1/shield');
  const st = r.body as { flags: Counters; blocked: { manual: number; meter: number; globalCap: number }; services: Array<{ name: string; passed: number; overRate: number; overConns: number; synproxy: number }> };
  const out: Counters = { blocked_manual: st.blocked.manual, blocked_meter: st.blocked.meter, global_cap: st.blocked.globalCap };
  for (const [k, v] of Object.entries(st.flags)) out[`flags_${k}`] = v;
  for (const s of st.services) Object.assign(out, { [`${s.name} passed`]: s.passed, [`${s.name} over rate`]: s.overRate, [`${s.name} over conns`]: s.overConns, [`${s.name} synproxy`]: s.synproxy });
  return out;
}

/** What grew between two readings, largest first: "name n, ..." (or "-"). */
function grew(before: Counters, after: Counters, rename: (k: string) => string = (k) => k): string {
  const d = Object.entries(after)
    .map(([k, v]) => [k, v - (before[k] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);
  return d.length === 0 ? '-' : d.map(([k, n]) => `${rename(k)} ${fmt(n)}`).join(', ');
}

/** The backend's TcpExt counters that say where SYNs went. */
const BACKEND_TCPEXT = ['ListenDrops', 'SyncookiesSent', 'TCPReqQFullDrop'];
async function backendCounters(lab: Lab, sl: ShieldLab): Promise<Counters> {
  const all = await tcpExtCounters(lab, sl.backend);
  return Object.fromEntries(BACKEND_TCPEXT.map((k) => [`backend ${k}`, all[k] ?? 0]));
}

function cpuCell(c: { seconds: number; kernel: number; softirq: number; user: number; proc: number | null }): string {
  return `kernel ${c.kernel.toFixed(2)} s (softirq ${c.softirq.toFixed(2)}), user ${c.user.toFixed(2)} s of ${(2 * c.seconds).toFixed(1)} s${c.proc === null ? '' : `; edgeward ${(c.proc * 1000).toFixed(0)} ms`}`;
}

async function shieldOn(lab: Lab, sl: ShieldLab, services: string[], extra: string[] = []): Promise<EdgewardInLab> {
  return startEdgeward(lab, sl.shield, {
    args: ['--shield-mode', 'router', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1, ...services.flatMap((s) => ['--shield-service', s]), ...extra],
  });
}

export async function measureShield(opts: { floodSeconds: number; log: (line: string) => void }): Promise<ShieldResult> {
  const skipped = labSkipReason({ needs: ['hping3', 'nft', 'sysctl', 'nginx', 'slowhttptest', 'curl', 'timeout'] }) ?? edgewardSkipReason();
  if (skipped) return { skipped };
  const { floodSeconds, log } = opts;
  return withLab(async (lab) => {
    const sl = await buildShieldLab(lab, { mode: 'router' });
    await startBackendServers(lab, sl, PORTS);
    const rows: ShieldRow[] = [];
    const push = (row: ShieldRow): void => {
      rows.push(row);
      log(`shield: ${row.attack}, ${row.column}: legit ${row.legit}; ${row.attacker}; ${row.layers}; CPU ${row.cpu}`);
    };
    /** the counters of where packets went: the shield's when it runs, else the backend's */
    const counters = async (ew: EdgewardInLab | null): Promise<Counters> => (ew ? shieldCounters(ew) : backendCounters(lab, sl));
    let ew: EdgewardInLab | null = null;

    // SYN flood, one and two hping3
    const synFlood = async (floods: number, column: string, note: string): Promise<void> => {
      const before = await counters(ew);
      const c = await withCpu(ew ? ew.process.pid : null, () => legitUnderSynFlood(lab, sl, sl.backendAddr, PORTS.tcp, floodSeconds, { floods }));
      const { legit: r, sent } = c.value;
      const after = await counters(ew);
      push({
        attack: `SYN flood, random sources, ${floods} hping3`,
        column,
        legit: `${r.ok}/${r.attempts} (${((100 * r.ok) / r.attempts).toFixed(1)} %), p99 ${r.p99Ms ?? '-'} ms`,
        share: r.ok / r.attempts,
        attacker: `${fmt(sent)} SYNs in ${c.seconds.toFixed(1)} s (${fmt(sent / c.seconds)}/s)`,
        layers: grew(before, after),
        cpu: cpuCell(c),
        note,
        packets: sent,
        seconds: c.seconds,
        kernelCpuS: c.kernel,
        edgewardCpuS: c.proc,
      });
    };
    // a flood that reached the backend leaves its SYN queue full of half-open connections, which
    // retry their SYN-ACKs for about a minute (tcp_synack_retries 5): the next column would meet a
    // full queue. Each column starts with an empty one.
    const drained = async (): Promise<void> => {
      const t0 = Date.now();
      const halfOpen = async (): Promise<number> => (await lab.exec(sl.backend, ['ss', '-Htn', 'state', 'syn-recv'])).stdout.split('\n').filter((l) => l.trim() !== '').length;
      const left = await waitFor('the backend\'s SYN queue to drain', async () => ((await halfOpen()) === 0 ? 0 : undefined), 90_000, 1000).catch(() => halfOpen());
      log(`shield: the backend's SYN queue ${left === 0 ? 'empty' : `still holds ${left}`} after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    };
    for (const floods of [1, 2]) {
      await drained();
      ew = await shieldOn(lab, sl, [`web=tcp:${sl.backendAddr}:${PORTS.tcp},rate=500`, `game=udp:${sl.backendAddr}:${PORTS.udp},rate=1000`]);
      await synFlood(floods, 'edgeward', 'synproxy in the shield namespace; the backend without cookies');
      await ew.stop();
      ew = null;
      await drained();
      await setSyncookies(lab, sl.backend, true);
      await synFlood(floods, 'backend SYN cookies', 'net.ipv4.tcp_syncookies=1 on the backend');
      await setSyncookies(lab, sl.backend, false);
      await drained();
      await synFlood(floods, 'none', 'backend: no SYN cookies, backlog 16');
    }

    // UDP flood from one source
    const udpFlood = async (column: string, note: string): Promise<void> => {
      const before = await counters(ew);
      const c = await withCpu(ew ? ew.process.pid : null, async () => {
        const legit = legitUdp(lab, sl.legit, sl.backendAddr, PORTS.udp, { pps: 100, seconds: floodSeconds });
        await sleep(500);
        const t0 = Date.now();
        const flood = hpingFlood(lab, sl.attacker, ['--udp', '--flood', '-p', String(PORTS.udp), sl.backendAddr], floodSeconds - 1);
        const blocked = ew
          ? await waitFor('the flooder on the blocklist', async () => (await lab.exec(sl.shield, ['nft', 'list', 'set', 'inet', 'edgeward_shield', 'block4'])).stdout.includes(sl.addr.attacker) && Date.now() - t0, 5000, 50).catch(() => -1)
          : null;
        return { sent: await flood, u: await legit, blocked };
      });
      const { sent, u, blocked } = c.value;
      const after = ew ? await counters(ew) : { 'backend delivered': u.received };
      push({
        attack: 'UDP flood, one source',
        column,
        legit: `${u.received}/${u.sent} answered (${(100 * u.ratio).toFixed(1)} %), p99 ${u.rttP99Ms ?? '-'} ms`,
        share: u.ratio,
        attacker: `${fmt(sent)} datagrams in ${(floodSeconds - 1).toFixed(0)} s (${fmt(sent / (floodSeconds - 1))}/s)`,
        layers: ew ? grew(before, after) : 'all forwarded to the backend',
        cpu: cpuCell(c),
        note: blocked === null ? note : `${note}; blocklisted after ${blocked} ms`,
        packets: sent,
        seconds: c.seconds,
        kernelCpuS: c.kernel,
        edgewardCpuS: c.proc,
      });
      await sleep(1000);
    };
    ew = await shieldOn(lab, sl, [`web=tcp:${sl.backendAddr}:${PORTS.tcp},rate=500`, `game=udp:${sl.backendAddr}:${PORTS.udp},rate=1000`]);
    await udpFlood('edgeward', 'per-source meter 1000/s -> blocklist');
    await ew.stop();
    ew = null;
    await udpFlood('none', 'no filter');

    // slowloris on nginx (64 connections, one worker)
    const dir = lab.tempDir('nginx');
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(dir, { connections: 64, servers: `  server {\n    listen ${sl.backendAddr}:${NGINX_PORT};\n    location / { return 200 "ok\\n"; }\n  }` }));
    lab.spawn(sl.backend, nginxArgv(conf, dir));
    const url = `http://${sl.backendAddr}:${NGINX_PORT}/`;
    await waitFor('nginx to listen', async () => (await curlGets(lab, sl.legit, url, 1)).ok === 1, 10_000, 200);
    const loris = async (column: string, note: string): Promise<void> => {
      const c = await withCpu(ew ? ew.process.pid : null, async () => {
        const attack = lab.spawn(sl.attacker, ['timeout', '-s', 'KILL', String(floodSeconds + 10), 'slowhttptest', '-c', '300', '-H', '-i', '3', '-r', '100', '-t', 'GET', '-u', url, '-x', '24', '-p', '3', '-l', String(floodSeconds + 5)]);
        await sleep(5000);
        const ok = (await curlGets(lab, sl.legit, url, 40)).ok;
        await attack.stop('SIGKILL');
        return ok;
      });
      const ok = c.value;
      const closed = ew ? ((await ew.api('GET', '/api/v1/shield')).body as { proxies: Array<{ closed: Record<string, number> }> }).proxies[0]?.closed ?? {} : null;
      push({
        attack: 'slowloris on nginx (64 connections)',
        column,
        legit: `${ok}/40 GETs (${((100 * ok) / 40).toFixed(0)} %)`,
        share: ok / 40,
        attacker: '300 slow connections, a header line every 3 s',
        layers: closed ? `proxy closed ${Object.entries(closed).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}` : 'all held by nginx',
        cpu: cpuCell(c),
        note,
        packets: 0,
        seconds: c.seconds,
        kernelCpuS: c.kernel,
        edgewardCpuS: c.proc,
      });
      await waitFor('nginx to serve again', async () => (await curlGets(lab, sl.legit, url, 1)).ok === 1, 30_000, 500).catch(() => undefined);
    };
    await loris('none', 'nginx alone');
    ew = await shieldOn(lab, sl, [`web=tcp:${sl.backendAddr}:${NGINX_PORT},rate=10000,conns=10000,proxy`], ['--shield-proxy-conns', '40', '--shield-min-rate', '256', '--shield-rate-grace', '2']);
    await loris('edgeward', 'L4 proxy: min rate 256 B/s over 2 s, cap 40');
    await ew.stop();
    return { rows, extrapolation: extrapolate(rows) };
  });
}

/** The appliance's goal: 25 Gbit/s of 64-byte SYNs (84 bytes on the wire with preamble and gap). */
const APPLIANCE_PPS = 25e9 / (84 * 8);

/**
 * The cores this design would need for the appliance's 37 Mpps, from the kernel CPU each attack
 * packet cost here. That CPU includes generating the packets (hping3's sends and the veth between
 * the namespaces, on the same two cores), so the figures are upper bounds for a receiving host.
 */
function extrapolate(rows: ShieldRow[]): string[] {
  const out: string[] = [];
  for (const r of rows.filter((x) => x.column === 'edgeward' && x.packets > 0)) {
    const perPacketUs = (r.kernelCpuS / r.packets) * 1e6;
    const ppsPerCore = r.packets / Math.max(1e-9, r.kernelCpuS);
    out.push(`${r.attack}: ${perPacketUs.toFixed(2)} us of kernel CPU per packet (${fmt(ppsPerCore)} packets per core-second, generation included) -> ${Math.ceil(APPLIANCE_PPS / ppsPerCore)} cores for ${(APPLIANCE_PPS / 1e6).toFixed(0)} Mpps at most`);
  }
  return out;
}

export function formatShield(r: ShieldResult): string {
  if ('skipped' in r) return `  skipped: ${r.skipped}`;
  const head = ['attack', 'column', 'legit client', 'attacker', 'where the attack went', 'CPU meanwhile (2 cores)', 'how'];
  const cells = r.rows.map((x) => [x.attack, x.column, x.legit, x.attacker, x.layers, x.cpu, x.note]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => `  ${c.map((v, i) => v.padEnd(w[i]!)).join('  ')}`.trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...cells.map(line), '', ...r.extrapolation.map((e) => `  ${e}`)].join('\n');
}
