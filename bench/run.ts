// `npm run bench`: direct vs edgeward vs microsocks vs Dante, side by side, in one run.
//   1. single-stream throughput through the proxy (iperf3 via proxychains4; fallback stream.c)
//   2. connections per second (cps.c against echo-server.c, SOCKS5 handshake + 64-byte echo)
//   3. the lab's MPTCP/TCP ratio (bench/lab-mptcp.ts, when it exists)
//   4. hybrid access (bench/lab-hybrid.ts): MPTCP/TCP through router + concentrator, failover stall
//   5. TURN (bench/turn.ts): edgeward's TURN server next to coturn: relayed traffic (turnutils_uclient)
//      and allocations/s (our own client), in a table of its own
//   6. the shield (bench/shield.ts, --only shield): floods and slowloris in the shield lab, what the
//      legitimate client gets without protection, with the backend's own SYN cookies, and with edgeward
//   7. the browser console (bench/console.ts, --only console): /console in headless Chromium: first
//      paint, sign-in to live, the page's memory over minutes of live updates, the connections view
//      with thousands of real rows
// Every sample is taken in rounds with the columns in rotating order, after a warm-up; the table
// shows medians, bench/results/latest.json holds every round. Exit code 0 even when a target is
// missed; 1 when the bench itself could not measure (a tool missing, a proxy that will not start).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatProfile, summarizeProfile, type ProfileSummary } from './cpu-profile.js';
import { compileTools, hold, startPortServer, type CTools, type LocalServer } from './c-tools.js';
import { consoleNotes, formatConsole, measureConsole, type ConsoleResult } from './console.js';
import { measureCps, type CpsSample } from './connections.js';
import { checkCongestion, congestionInfo, congestionNote, inPrivateNamespace, runInPrivateNamespace, setUpPrivateNamespace, type CongestionInfo } from './congestion.js';
import { runLab, type LabOutcome } from './lab.js';
import { measureHybrid, type HybridOutcome } from './lab-hybrid.js';
import { measurePaths, type PathsOutcome } from './lab-paths.js';
import { cpuTimes, killAllNow, rssBytes, stopAll, which, withTimeout } from './procs.js';
import { formatTable, judge, median, spread, type Goal, type Row } from './report.js';
import { directTarget, PEER_NAMES, startDante, startEdgeward, startMicrosocks, TARGET_NAMES, type Target, type TargetName } from './targets.js';
import { buildTurnRows, measureTurn, RELAY_LOADS, turnNotes, turnRoundsText, type TurnResult } from './turn.js';
import { TURN_SERVER_NAMES } from './turn-servers.js';
import { formatRendezvous, measureRendezvous, type RendezvousResult } from './rendezvous.js';
import { formatShield, measureShield, type ShieldResult } from './shield.js';
import { IperfRunner, StreamRunner, type Direction, type ThroughputRunner, type ThroughputSample } from './throughput.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);
const RESULTS_DIR = join(BENCH_DIR, 'results');

/** edgeward against the better of microsocks and Dante (issue 11's targets) */
const GOALS = {
  throughput: { min: 1.5 },
  cps: { min: 1.2, stretch: 1.5 },
  serial: { min: 1.0 },
  p99: { max: 1.0 },
  idleMemory: { max: 1.0 },
  lab: { min: 1.9 },
  hybrid: { min: 1.9 },
  ndiffports: { min: 1.6 },
  fullmesh: { min: 1.8 },
} satisfies Record<string, Goal>;

/** seconds without progress when an uplink dies mid-download */
const STALL_GOAL_SECONDS = 2;

const PARTS = ['throughput', 'cps', 'lab', 'hybrid', 'paths', 'turn', 'rendezvous', 'shield', 'console'];
/** the parts that build network namespaces of their own (which take the machine's congestion control, not --congestion's) */
const LAB_PARTS = ['lab', 'hybrid', 'paths', 'shield'];

const USAGE = `Usage: npm run bench -- [options]
  --rounds N          measured rounds per column and metric (default 3; median is reported)
  --seconds S         seconds per throughput sample, after 1 omitted second (default 5)
  --cps-seconds S     seconds per connections/s sample (default 5)
  --concurrency N     transactions in flight for connections/s (default 32)
  --spread K          connections/s: client source addresses 127.0.0.1..K and echo server
                      addresses 127.0.0.1..K, so loopback ports do not set the pace (default 8)
  --only LIST         comma-separated subset of: throughput,cps,lab,hybrid,paths,turn,rendezvous,shield,console
                      (default: throughput,cps,lab,hybrid; turn takes ~5 min at 3 rounds,
                      rendezvous ~2 min, shield ~3 min: SYN floods, UDP flood and slowloris in the
                      shield lab, without and with edgeward; console ~11 min: /console in headless
                      Chromium, most of it the memory soak)
  --turn-seconds S    seconds per TURN allocations/s sample (default 5)
  --turn-concurrency N  TURN allocations in flight, each on its own socket (default 32)
  --lab-timeout S     give the lab this long (default 600)
  --console-minutes M console: minutes the overview stays open on live updates, with light SOCKS
                      traffic, for the page's memory (default 10; --quick: 1)
  --console-rows N    console: proxied connections held for the connections view (default 9000). Each
                      costs edgeward two fds: at most (hard RLIMIT_NOFILE - 2000) / 2, 9000 at 20000
  --quick             1 round of 2 s each, for trying the bench out (TURN: 1 round, 2 s of allocations;
                      rendezvous: 5 sessions per path, 1000 devices online; console: a 1-minute soak)
  --keep-tmp          keep the temp directory (compiled tools, proxychains configs, edgeward data)
  --edgeward-args=A   extra \`edgeward start\` flags for the SOCKS column, space-separated (an A/B of a
                      setting in one session, e.g. --edgeward-args="--busy-poll 0"; with the =)
  --congestion NAME   measure with this TCP congestion control (cubic, bbr, reno, ...) in a private
                      network namespace the bench starts itself in (needs root); the machine's
                      net.ipv4.tcp_congestion_control is not touched. Default: the machine's. The
                      labs (lab, hybrid, paths, shield) build namespaces of their own, and a new
                      namespace starts with the machine's setting: they keep it
  --profile           run edgeward (the SOCKS columns) under node --cpu-prof and print where its
                      CPU time went: its worker threads (the data plane) together, and its main
                      thread apart (slows edgeward down: its figures in that run are not representative)
Writes bench/results/latest.json. Traffic stays on loopback (127.0.0.0/8).
`;

interface Options {
  rounds: number;
  seconds: number;
  cpsSeconds: number;
  concurrency: number;
  spread: number;
  only: Set<string>;
  labTimeout: number;
  turnSeconds: number;
  turnConcurrency: number;
  /** rendezvous: sessions per path for the first-byte time, devices online at once */
  rendezvousSessions: number;
  rendezvousDevices: number;
  consoleMinutes: number;
  consoleRows: number;
  keepTmp: boolean;
  profile: boolean;
  edgewardArgs: string[];
  congestion?: string;
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      'cps-seconds': { type: 'string' },
      concurrency: { type: 'string' },
      spread: { type: 'string' },
      only: { type: 'string' },
      'lab-timeout': { type: 'string' },
      'turn-seconds': { type: 'string' },
      'turn-concurrency': { type: 'string' },
      'console-minutes': { type: 'string' },
      'console-rows': { type: 'string' },
      quick: { type: 'boolean' },
      'keep-tmp': { type: 'boolean' },
      profile: { type: 'boolean' },
      'edgeward-args': { type: 'string' },
      congestion: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const int = (name: string, text: string | undefined, dflt: number, lo: number, hi: number): number => {
    if (text === undefined) return dflt;
    const n = Number(text);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`--${name} must be an integer ${lo}..${hi}, got "${text}"`);
    return n;
  };
  const quick = values.quick === true;
  const only = new Set((values.only ?? 'throughput,cps,lab,hybrid,paths').split(',').map((s) => s.trim()).filter(Boolean));
  for (const o of only) if (!PARTS.includes(o)) throw new Error(`--only: unknown part "${o}" (parts: ${PARTS.join(', ')})`);
  if (values.congestion !== undefined) checkCongestion(values.congestion);
  return {
    rounds: int('rounds', values.rounds, quick ? 1 : 3, 1, 20),
    seconds: int('seconds', values.seconds, quick ? 2 : 5, 1, 60),
    cpsSeconds: int('cps-seconds', values['cps-seconds'], quick ? 2 : 5, 1, 60),
    concurrency: int('concurrency', values.concurrency, 32, 1, 1024),
    spread: int('spread', values.spread, 8, 1, 64),
    only,
    labTimeout: int('lab-timeout', values['lab-timeout'], 600, 10, 3600),
    turnSeconds: int('turn-seconds', values['turn-seconds'], quick ? 2 : 5, 1, 60),
    turnConcurrency: int('turn-concurrency', values['turn-concurrency'], 32, 1, 1024),
    rendezvousSessions: quick ? 5 : 20,
    rendezvousDevices: quick ? 1000 : 5000,
    consoleMinutes: int('console-minutes', values['console-minutes'], quick ? 1 : 10, 0, 240),
    consoleRows: int('console-rows', values['console-rows'], 9000, 1, 100_000),
    keepTmp: values['keep-tmp'] === true,
    profile: values.profile === true,
    edgewardArgs: (values['edgeward-args'] ?? '').split(/\s+/).filter(Boolean),
    ...(values.congestion !== undefined ? { congestion: values.congestion } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// machine

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function quietly(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function debVersion(pkg: string): string | undefined {
  return quietly('dpkg-query', ['-W', '-f', '${Version}', pkg]) || undefined;
}

function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const commit = quietly('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = (quietly('git', ['-C', ROOT, 'status', '--porcelain']) ?? '') !== '';
  return {
    kernel: os.release(),
    kernelBuild: os.version(),
    cpuModel: cpus[0]?.model,
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    edgeward: `${pkg.version}${commit ? ` (${commit}${dirty ? ', uncommitted changes' : ''})` : ''}`,
    microsocks: which('microsocks') ? debVersion('microsocks') ?? 'installed (version unknown)' : 'not installed',
    dante: which('danted') ? debVersion('dante-server') ?? 'installed (version unknown)' : 'not installed',
    iperf3: quietly('iperf3', ['--version'])?.split('\n')[0] ?? 'not installed',
    proxychains4: which('proxychains4') ? debVersion('proxychains4') ?? 'installed (version unknown)' : 'not installed',
    coturn: which('turnserver') ? debVersion('coturn') ?? 'installed (version unknown)' : 'not installed',
    gcc: quietly('gcc', ['-dumpfullversion']),
    sysctl: {
      'net.ipv4.tcp_tw_reuse': readText('/proc/sys/net/ipv4/tcp_tw_reuse'),
      'net.ipv4.ip_local_port_range': readText('/proc/sys/net/ipv4/ip_local_port_range')?.replace(/\s+/, '-'),
      'net.ipv4.tcp_max_tw_buckets': readText('/proc/sys/net/ipv4/tcp_max_tw_buckets'),
      'net.core.somaxconn': readText('/proc/sys/net/core/somaxconn'),
      'net.mptcp.enabled': readText('/proc/sys/net/mptcp/enabled'),
    },
    congestion: congestionInfo(),
  };
}

// ---------------------------------------------------------------------------------------------
// measuring

interface RoundRecord<T> {
  round: number;
  /** -1 = warm-up (not in the median) */
  target: TargetName;
  sample?: T;
  error?: string;
  /** CPU the proxy process used over the sample's wall time (1.0 = one core busy), all threads */
  proxyCpu?: { cores: number; userCores: number; sysCores: number };
  wallSeconds: number;
}

let clockTicks = 100;

/** Runs one sample and records the proxy's CPU use around it; errors become records, not throws. */
async function sample<T>(target: Target, round: number, fn: () => Promise<T>): Promise<RoundRecord<T>> {
  const pid = target.proc?.pid;
  const cpu0 = pid ? cpuTimes(pid, clockTicks) : undefined;
  const t0 = process.hrtime.bigint();
  const rec: RoundRecord<T> = { round, target: target.name, wallSeconds: 0 };
  try {
    rec.sample = await fn();
  } catch (e) {
    rec.error = e instanceof Error ? e.message : String(e);
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  rec.wallSeconds = round3(wall);
  const cpu1 = pid ? cpuTimes(pid, clockTicks) : undefined;
  if (cpu0 && cpu1 && wall > 0) {
    const user = (cpu1.user - cpu0.user) / wall;
    const sys = (cpu1.sys - cpu0.sys) / wall;
    rec.proxyCpu = { cores: round3(user + sys), userCores: round3(user), sysCores: round3(sys) };
  }
  if (target.proc && target.proc.status()) rec.error = (rec.error ? rec.error + '; ' : '') + `${target.name} exited: ${target.proc.stderr().trim().slice(-300)}`;
  return rec;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function rotate<T>(xs: readonly T[], by: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + by) % n]!);
}

function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

function gbps(s: ThroughputSample): string {
  return (s.bitsPerSecond / 1e9).toFixed(2);
}

interface ThroughputResult {
  method: string;
  fallbackReason?: string;
  seconds: number;
  omittedSeconds: number;
  records: Record<Direction, RoundRecord<ThroughputSample>[]>;
}

async function chooseThroughputRunner(tmp: string, streamBin: string, targets: Target[], seconds: number): Promise<{ runner: ThroughputRunner; warmups: RoundRecord<ThroughputSample>[]; fallbackReason?: string }> {
  const iperf = IperfRunner.find(tmp);
  const warmups: RoundRecord<ThroughputSample>[] = [];
  let fallbackReason = iperf ? undefined : 'iperf3 or proxychains4 not on PATH';
  if (iperf) {
    // the warm-up doubles as the probe: every column must work through proxychains, twice at most
    probe: for (const t of targets) {
      for (const dir of iperf.directions) {
        let rec = await sample(t, -1, () => iperf.measure(t, dir, Math.min(seconds, 2)));
        if (rec.error) rec = await sample(t, -1, () => iperf.measure(t, dir, Math.min(seconds, 2)));
        warmups.push(rec);
        if (rec.error) {
          fallbackReason = `iperf3 via proxychains4 failed for ${t.name} (${dir}): ${rec.error}`;
          break probe;
        }
        log(`warm-up throughput ${dir} ${t.name}: ${gbps(rec.sample!)} Gbit/s`);
      }
    }
    if (!fallbackReason) return { runner: iperf, warmups };
  }
  log(`throughput: falling back to stream.c: ${fallbackReason}`);
  const runner = await StreamRunner.start(streamBin);
  for (const t of targets) {
    const rec = await sample(t, -1, () => runner.measure(t, 'down', Math.min(seconds, 2)));
    warmups.push(rec);
  }
  return { runner, warmups, fallbackReason: fallbackReason! };
}

async function measureThroughput(tmp: string, streamBin: string, targets: Target[], o: Options): Promise<ThroughputResult & { warmups: RoundRecord<ThroughputSample>[] }> {
  const { runner, warmups, fallbackReason } = await chooseThroughputRunner(tmp, streamBin, targets, o.seconds);
  const records: Record<Direction, RoundRecord<ThroughputSample>[]> = { up: [], down: [] };
  try {
    for (let r = 0; r < o.rounds; r++) {
      for (const dir of runner.directions) {
        for (const t of rotate(targets, r)) {
          const rec = await sample(t, r, () => runner.measure(t, dir, o.seconds));
          records[dir].push(rec);
          log(`round ${r + 1}/${o.rounds} throughput ${dir} ${t.name}: ${rec.sample ? `${gbps(rec.sample)} Gbit/s` : `error: ${rec.error}`}`);
        }
      }
    }
  } finally {
    await runner.close();
  }
  const result: ThroughputResult & { warmups: RoundRecord<ThroughputSample>[] } = { method: runner.method, seconds: o.seconds, omittedSeconds: 1, records, warmups };
  if (fallbackReason) result.fallbackReason = fallbackReason;
  return result;
}

interface CpsResult {
  concurrency: number;
  spread: number;
  payload: number;
  seconds: number;
  records: RoundRecord<CpsSample>[];
  /** one client, one connection after another (concurrency 1): the delay each new connection gets */
  serial: RoundRecord<CpsSample>[];
  warmups: RoundRecord<CpsSample>[];
  held?: Partial<Record<TargetName, HeldEntry>>;
}

/** connections held open for the memory row, and for the held-connections row */
const IDLE_HELD = 3000;
const MANY_HELD = 9000;

interface HeldEntry {
  /** RSS growth per connection while IDLE_HELD are open, KiB */
  idleKiB?: number;
  idleHeld?: number;
  /** of MANY_HELD */
  many?: { held: number; errors: Record<string, number> };
  /** RSS growth per connection while MANY_HELD are open, KiB (steadier than idleKiB against a garbage-collected heap) */
  manyKiB?: number;
  error?: string;
}

/** Memory per idle proxied connection (IDLE_HELD open) and MANY_HELD open at once, per proxy. */
async function measureHeld(holdBin: string, echo: LocalServer, targets: Target[], spread: number): Promise<Partial<Record<TargetName, HeldEntry>>> {
  const out: Partial<Record<TargetName, HeldEntry>> = {};
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  for (const t of targets) {
    if (t.socksPort === undefined || !t.proc) continue;
    const e: HeldEntry = {};
    out[t.name] = e;
    try {
      const before = rssBytes(t.proc.pid);
      const idle = await hold(holdBin, echo.port, t.socksPort, IDLE_HELD, spread);
      await pause(500);
      const after = rssBytes(t.proc.pid);
      await idle.proc.stop(2000);
      if (before !== undefined && after !== undefined && idle.held > 0) {
        e.idleKiB = (after - before) / idle.held / 1024;
        e.idleHeld = idle.held;
      }
      log(`held ${t.name}: ${idle.held}/${IDLE_HELD} idle, RSS ${((before ?? 0) / 1048576).toFixed(1)} -> ${((after ?? 0) / 1048576).toFixed(1)} MiB (${e.idleKiB?.toFixed(1) ?? '?'} KiB each)`);
      await pause(2000); // the proxy closes them
      const base = rssBytes(t.proc.pid);
      const many = await hold(holdBin, echo.port, t.socksPort, MANY_HELD, spread);
      await pause(500);
      const top = rssBytes(t.proc.pid);
      e.many = { held: many.held, errors: many.errors };
      if (base !== undefined && top !== undefined && many.held > 0) e.manyKiB = (top - base) / many.held / 1024;
      await many.proc.stop(2000);
      log(`held ${t.name}: ${many.held}/${MANY_HELD} at once, errors ${JSON.stringify(many.errors)}, RSS ${((base ?? 0) / 1048576).toFixed(1)} -> ${((top ?? 0) / 1048576).toFixed(1)} MiB`);
      await pause(3000);
    } catch (err) {
      e.error = (err as Error).message;
      log(`held ${t.name}: ${e.error}`);
    }
  }
  return out;
}

async function measureConnections(cpsBin: string, echo: LocalServer, targets: Target[], o: Options): Promise<CpsResult> {
  const opts = { concurrency: o.concurrency, payload: 64, timeoutMs: 3000, spread: o.spread };
  const warmups: RoundRecord<CpsSample>[] = [];
  for (const t of targets) {
    const rec = await sample(t, -1, () => measureCps(cpsBin, echo.port, t, 1, opts));
    warmups.push(rec);
    log(`warm-up connections/s ${t.name}: ${rec.sample ? rec.sample.perSecond.toFixed(0) : `error: ${rec.error}`}`);
  }
  const records: RoundRecord<CpsSample>[] = [];
  const serial: RoundRecord<CpsSample>[] = [];
  const serialOpts = { ...opts, concurrency: 1 };
  for (let r = 0; r < o.rounds; r++) {
    for (const t of rotate(targets, r)) {
      const rec = await sample(t, r, () => measureCps(cpsBin, echo.port, t, o.cpsSeconds, opts));
      records.push(rec);
      const s = rec.sample;
      log(`round ${r + 1}/${o.rounds} connections/s ${t.name}: ${s ? `${s.perSecond.toFixed(0)} (errors ${s.errorsTotal}, p99 ${(s.latencyUs.p99 / 1000).toFixed(2)} ms)` : `error: ${rec.error}`}`);
      const one = await sample(t, r, () => measureCps(cpsBin, echo.port, t, o.cpsSeconds, serialOpts));
      serial.push(one);
      log(`round ${r + 1}/${o.rounds} connections/s, one client ${t.name}: ${one.sample ? `${one.sample.perSecond.toFixed(0)} (p50 ${(one.sample.latencyUs.p50 / 1000).toFixed(2)} ms)` : `error: ${one.error}`}`);
    }
  }
  return { concurrency: opts.concurrency, spread: opts.spread, payload: opts.payload, seconds: o.cpsSeconds, records, serial, warmups };
}

// ---------------------------------------------------------------------------------------------
// summary

type CellSource = Record<TargetName, { values: number[]; why?: string }>;

/**
 * A row of medians; its ratio is edgeward against the better peer (microsocks or Dante): the
 * higher value, or the lower one for a figure where less is better (latency, CPU).
 */
function metricRow(metric: string, src: CellSource, digits: number, goal?: Goal, better: 'higher' | 'lower' = 'higher'): Row {
  const cells = {} as Record<TargetName, string>;
  const med = {} as Partial<Record<TargetName, number>>;
  for (const name of TARGET_NAMES) {
    const m = median(src[name].values);
    if (m !== undefined) med[name] = m;
    cells[name] = m !== undefined ? m.toFixed(digits) : src[name].why ?? '-';
  }
  const row: Row = { metric, cells, result: '' };
  const peers = PEER_NAMES.map((n) => med[n]).filter((v): v is number => v !== undefined && v > 0);
  const best = peers.length === 0 ? undefined : better === 'higher' ? Math.max(...peers) : Math.min(...peers);
  if (med.edgeward !== undefined && best !== undefined) row.ratio = med.edgeward / best;
  if (goal) row.goal = goal;
  row.result = judge(row.ratio, goal);
  return row;
}

function sourceFrom<T>(targets: Target[], records: RoundRecord<T>[], value: (s: T, rec: RoundRecord<T>) => number | undefined): CellSource {
  const src = {} as CellSource;
  for (const name of TARGET_NAMES) {
    const t = targets.find((x) => x.name === name);
    const mine = records.filter((r) => r.target === name);
    const values = mine.flatMap((r) => {
      const v = r.sample ? value(r.sample, r) : undefined;
      return v === undefined ? [] : [v];
    });
    src[name] = { values };
    // the cell says what ("not installed", "start failed"); the log has the details
    if (t?.unavailable) src[name].why = t.unavailable.split(':')[0]!;
    else if (mine.length > 0 && values.length === 0) src[name].why = mine.some((r) => r.error) ? 'error' : '-';
  }
  return src;
}

function buildRows(targets: Target[], tp: ThroughputResult | undefined, cps: CpsResult | undefined, lab: LabOutcome | undefined, hybrid: HybridOutcome | undefined, paths: PathsOutcome | undefined): Row[] {
  const rows: Row[] = [];
  const label: Record<Direction, string> = { up: 'throughput up (Gbit/s)', down: 'throughput down (Gbit/s)' };
  if (tp) {
    for (const dir of ['up', 'down'] as const) {
      if (tp.records[dir].length === 0) continue;
      rows.push(metricRow(label[dir], sourceFrom(targets, tp.records[dir], (s) => s.bitsPerSecond / 1e9), 2, GOALS.throughput));
    }
  }
  if (cps) {
    rows.push(metricRow('connections/s', sourceFrom(targets, cps.records, (s) => s.perSecond), 0, GOALS.cps));
    rows.push(metricRow('connections/s, one client', sourceFrom(targets, cps.serial, (s) => s.perSecond), 0, GOALS.serial));
  }
  const labCells: Record<TargetName, string> = { direct: '-', edgeward: '-', microsocks: '-', dante: '-' };
  if (lab) {
    const row: Row = { metric: 'lab MPTCP/TCP ratio', cells: labCells, goal: GOALS.lab, result: 'n/a' };
    if (lab.status === 'measured') {
      labCells.edgeward = `${lab.ratio.toFixed(2)}x`;
      row.result = lab.ratio >= GOALS.lab.min ? 'PASS' : 'MISS';
    } else {
      labCells.edgeward = lab.status;
    }
    rows.push(row);
  }
  if (hybrid) {
    const ratioCells: Record<TargetName, string> = { direct: '-', edgeward: hybrid.status === 'measured' ? `${hybrid.ratio.toFixed(2)}x` : hybrid.status, microsocks: '-', dante: '-' };
    const stallCells: Record<TargetName, string> = { direct: '-', edgeward: hybrid.status === 'measured' ? hybrid.stallSeconds.toFixed(2) : hybrid.status, microsocks: '-', dante: '-' };
    rows.push({ metric: 'hybrid access MPTCP/TCP ratio', cells: ratioCells, goal: GOALS.hybrid, result: hybrid.status === 'measured' ? (hybrid.ratio >= GOALS.hybrid.min ? 'PASS' : 'MISS') : 'n/a' });
    rows.push({
      metric: 'failover stall, uplink down (s)',
      cells: stallCells,
      goalLabel: `< ${STALL_GOAL_SECONDS.toFixed(1)} s`,
      result: hybrid.status === 'measured' ? (hybrid.stallSeconds < STALL_GOAL_SECONDS ? 'PASS' : 'MISS') : 'n/a',
    });
    const bhCells: Record<TargetName, string> = { direct: '-', edgeward: hybrid.status === 'measured' ? hybrid.blackholeStallSeconds.toFixed(2) : hybrid.status, microsocks: '-', dante: '-' };
    rows.push({
      metric: 'failover stall, uplink blackholed (s)',
      cells: bhCells,
      goalLabel: `< ${STALL_GOAL_SECONDS.toFixed(1)} s`,
      result: hybrid.status === 'measured' ? (hybrid.blackholeStallSeconds < STALL_GOAL_SECONDS ? 'PASS' : 'MISS') : 'n/a',
    });
  }
  if (paths) {
    const m = paths.status === 'measured' ? paths : null;
    const cell = (v: string): Record<TargetName, string> => ({ direct: '-', edgeward: m ? v : paths.status, microsocks: '-', dante: '-' });
    rows.push({
      metric: 'ECMP ndiffports 8 / one subflow',
      cells: cell(m ? `${m.ecmp.ratio.toFixed(2)}x` : ''),
      goal: GOALS.ndiffports,
      result: m ? (m.ecmp.ratio >= GOALS.ndiffports.min && m.ecmp.subflows === 8 ? 'PASS' : 'MISS') : 'n/a',
    });
    rows.push({ metric: 'fullmesh, two uplinks / one path', cells: cell(m ? `${m.fullmesh.ratio.toFixed(2)}x` : ''), goal: GOALS.fullmesh, result: m ? (m.fullmesh.ratio >= GOALS.fullmesh.min ? 'PASS' : 'MISS') : 'n/a' });
    rows.push({ metric: 'backup uplink share while A works (%)', cells: cell(m ? (m.backup.calmShareB * 100).toFixed(2) : ''), goalLabel: '< 5 %', result: m ? (m.backup.calmShareB < 0.05 ? 'PASS' : 'MISS') : 'n/a' });
    rows.push({
      metric: 'backup failover stall, A blackholed (s)',
      cells: cell(m ? (m.backup.stallMs / 1000).toFixed(2) : ''),
      goalLabel: `< ${STALL_GOAL_SECONDS.toFixed(1)} s`,
      result: m ? (m.backup.stallMs / 1000 < STALL_GOAL_SECONDS ? 'PASS' : 'MISS') : 'n/a',
    });
    rows.push({ metric: '  back on A after it returns (s)', cells: cell(m ? (m.backup.returnedMs === null ? 'never' : (m.backup.returnedMs / 1000).toFixed(2)) : ''), goalLabel: 'returns', result: m ? (m.backup.returnedMs !== null ? 'PASS' : 'MISS') : 'n/a' });
  }
  // information only: no target
  if (cps) {
    rows.push(metricRow('  cps latency p99 (ms)', sourceFrom(targets, cps.records, (s) => s.latencyUs.p99 / 1000), 2, GOALS.p99, 'lower'));
    const errs = sourceFrom(targets, cps.records, (s) => s.errorsTotal);
    const sumRow = metricRow('  cps errors (all rounds)', errs, 0);
    for (const name of TARGET_NAMES) if (errs[name].values.length > 0) sumRow.cells[name] = String(errs[name].values.reduce((a, b) => a + b, 0));
    delete sumRow.ratio;
    rows.push(sumRow);
    rows.push(metricRow('  proxy CPU during cps (cores)', sourceFrom(targets, cps.records, (_s, r) => r.proxyCpu?.cores), 2, undefined, 'lower'));
    // CPU per transaction hardly depends on how busy the machine is: the steadier comparison
    const perConn = (pick: (c: NonNullable<RoundRecord<CpsSample>['proxyCpu']>) => number) => (s: CpsSample, r: RoundRecord<CpsSample>) =>
      r.proxyCpu && s.perSecond > 0 ? (pick(r.proxyCpu) / s.perSecond) * 1e6 : undefined;
    rows.push(metricRow('  proxy CPU/connection, user (us)', sourceFrom(targets, cps.records, perConn((c) => c.userCores)), 0, undefined, 'lower'));
    rows.push(metricRow('  proxy CPU/connection, kernel (us)', sourceFrom(targets, cps.records, perConn((c) => c.sysCores)), 0, undefined, 'lower'));
  }
  if (cps?.held) {
    const held = cps.held;
    const src = (pick: (e: HeldEntry) => number | undefined): CellSource =>
      Object.fromEntries(TARGET_NAMES.map((n) => {
        const e = held[n];
        const v = e ? pick(e) : undefined;
        return [n, v !== undefined ? { values: [v] } : { values: [], why: e?.error ? 'failed' : '-' }];
      })) as CellSource;
    rows.push(metricRow(`RSS per idle proxied connection (KiB, ${IDLE_HELD} held)`, src((e) => e.idleKiB), 1, GOALS.idleMemory, 'lower'));
    rows.push(metricRow(`  RSS per proxied connection (KiB, ${MANY_HELD} held)`, src((e) => e.manyKiB), 1, undefined, 'lower'));
    const many = metricRow(`connections held at once (of ${MANY_HELD})`, src((e) => e.many?.held), 0);
    delete many.ratio;
    const mine = held.edgeward?.many;
    many.goalLabel = `${MANY_HELD}, no error`;
    many.result = mine ? (mine.held === MANY_HELD && Object.keys(mine.errors).length === 0 ? 'PASS' : 'MISS') : 'n/a';
    rows.push(many);
  }
  if (tp) {
    for (const dir of ['up', 'down'] as const) {
      if (tp.records[dir].length === 0) continue;
      rows.push(metricRow(`  proxy CPU during ${dir} (cores)`, sourceFrom(targets, tp.records[dir], (_s, r) => r.proxyCpu?.cores), 2, undefined, 'lower'));
      rows.push(metricRow(`  proxy CPU per GB ${dir} (s)`, sourceFrom(targets, tp.records[dir], (s, r) => (r.proxyCpu && s.bitsPerSecond > 0 ? r.proxyCpu.cores / (s.bitsPerSecond / 8 / 1e9) : undefined)), 3, undefined, 'lower'));
    }
  }
  return rows;
}

function roundsText(targets: Target[], tp: ThroughputResult | undefined, cps: CpsResult | undefined): string {
  const lines: string[] = [];
  const add = <T>(what: string, records: RoundRecord<T>[], value: (s: T) => number, digits: number): void => {
    for (const t of targets) {
      if (t.unavailable) continue;
      const mine = records.filter((r) => r.target === t.name);
      if (mine.length === 0) continue;
      const vals = mine.flatMap((r) => (r.sample ? [value(r.sample)] : []));
      const sp = spread(vals);
      const shown = mine.map((r) => (r.sample ? value(r.sample).toFixed(digits) : 'err')).join(' ');
      lines.push(`  ${what.padEnd(24)} ${t.name.padEnd(10)} ${shown}${sp !== undefined ? `   (spread ${(sp * 100).toFixed(0)}%)` : ''}`);
    }
  };
  if (tp) for (const dir of ['up', 'down'] as const) add(`throughput ${dir} Gbit/s`, tp.records[dir], (s) => s.bitsPerSecond / 1e9, 2);
  if (cps) {
    add('connections/s', cps.records, (s) => s.perSecond, 0);
    add('connections/s, one client', cps.serial, (s) => s.perSecond, 0);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let opts: Options | 'help';
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const o = opts;
  if (o.congestion !== undefined && !inPrivateNamespace()) return runInPrivateNamespace(o.congestion);
  if (inPrivateNamespace()) {
    try {
      setUpPrivateNamespace();
    } catch (e) {
      log(`--congestion: could not set up the private network namespace: ${(e as Error).message}`);
      return 1;
    }
  }
  clockTicks = Number(quietly('getconf', ['CLK_TCK']) ?? '100') || 100;

  const tmp = mkdtempSync(join(os.tmpdir(), 'edgeward-bench-'));
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping everything this bench started`);
    void stopAll().finally(() => {
      if (!o.keepTmp) rmSync(tmp, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    killAllNow();
    if (!o.keepTmp) rmSync(tmp, { recursive: true, force: true });
  });

  const started = new Date();
  const machine = machineInfo();
  machine.loadavgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  log(`kernel ${machine.kernel}, ${machine.cores} cores, node ${machine.node}, microsocks ${machine.microsocks}, dante ${machine.dante}, coturn ${machine.coturn}, load ${(machine.loadavgStart as number[]).join(' ')}`);

  // the SOCKS columns (and the C tools) are needed by throughput and connections/s only
  const socksParts = o.only.has('throughput') || o.only.has('cps');
  const profileDir = o.profile && socksParts ? join(RESULTS_DIR, `profile-${started.toISOString().replace(/[:.]/g, '-')}`) : undefined;
  const targets: Target[] = socksParts ? [directTarget()] : [];
  let failed = false;
  let tp: (ThroughputResult & { warmups: RoundRecord<ThroughputSample>[] }) | undefined;
  let cps: CpsResult | undefined;
  let lab: LabOutcome | undefined;
  let hybrid: HybridOutcome | undefined;
  let paths: PathsOutcome | undefined;
  let turn: TurnResult | undefined;
  let rendezvous: RendezvousResult | undefined;
  let shield: ShieldResult | undefined;
  let consoleResult: ConsoleResult | undefined;
  // the C tools are compiled once, by the first part that needs them
  let compiled: Promise<CTools> | undefined;
  const tools = (): Promise<CTools> => (compiled ??= compileTools(BENCH_DIR, tmp));
  const consoleOptions = { loads: 5, minutes: o.consoleMinutes, rows: o.consoleRows, spread: o.spread, log };
  const rendezvousOptions = { sessions: o.rendezvousSessions, devices: o.rendezvousDevices, throughputBytes: 32 * 1024 * 1024, clockTicks };
  try {
    if (socksParts) {
      const bins = await tools();
      targets.push(await startEdgeward(ROOT, tmp, profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [], o.edgewardArgs), await startMicrosocks(), await startDante(tmp));
      for (const t of targets) {
        if (t.unavailable) log(`${t.name}: ${t.unavailable}`);
        else if (t.socksPort) log(`${t.name}: SOCKS5 on 127.0.0.1:${t.socksPort} (pid ${t.proc?.pid})`);
        if (t.startFailed) failed = true;
      }
      const live = targets.filter((t) => !t.unavailable);

      if (o.only.has('throughput')) tp = await measureThroughput(tmp, bins.stream, live, o);
      if (o.only.has('cps')) {
        const echo = await startPortServer('echo-server', bins.echoServer, ['--addrs', String(o.spread)]);
        try {
          cps = await measureConnections(bins.cps, echo, live, o);
          cps.held = await measureHeld(bins.hold, echo, live, o.spread);
        } finally {
          await echo.proc.stop(2000);
        }
      }
    }
  } finally {
    // the lab builds its own topology: give it the machine to itself
    await Promise.all(targets.map((t) => t.stop()));
  }
  let profile: { dir: string; workerThreads: number; workers: ProfileSummary; main: ProfileSummary } | undefined;
  if (profileDir) {
    const files = (() => {
      try {
        return readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
      } catch {
        return [];
      }
    })();
    // node --cpu-prof names them CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile: thread 0 is
    // the main thread (start-up, the API, the store), the others the worker threads (the data plane)
    const isMain = (f: string): boolean => /\.\d+\.0\.\d+\.cpuprofile$/.test(f);
    const workers = files.filter((f) => !isMain(f)).map((f) => join(profileDir, f));
    const main = files.filter(isMain).map((f) => join(profileDir, f));
    if (files.length > 0) {
      profile = { dir: profileDir, workerThreads: workers.length, workers: summarizeProfile(workers, ROOT, 20), main: summarizeProfile(main, ROOT, 10) };
    } else log('profile: edgeward wrote no .cpuprofile (it must exit normally on SIGTERM)');
  }
  if (o.only.has('turn')) {
    log('turn: edgeward TURN next to coturn');
    turn = await measureTurn(ROOT, tmp, { rounds: o.rounds, allocSeconds: o.turnSeconds, concurrency: o.turnConcurrency, loads: RELAY_LOADS, clockTicks }, log);
    for (const f of turn.failures) log(f);
    if (turn.failed) failed = true;
  }
  if (o.only.has('rendezvous')) {
    log('rendezvous: peers on loopback, presence WebSockets');
    rendezvous = await measureRendezvous(ROOT, tmp, rendezvousOptions, log);
    for (const f of rendezvous.failures) log(`rendezvous: ${f}`);
    if (rendezvous.failures.length > 0) failed = true;
  }
  if (o.only.has('shield')) {
    log('shield: floods and slowloris in the shield lab (network namespaces)');
    shield = await measureShield({ floodSeconds: o.seconds < 5 ? 5 : 10, log });
    if ('skipped' in shield) {
      log(`shield: cannot measure: ${shield.skipped}`);
      failed = true;
    }
  }
  if (o.only.has('console')) {
    log(`console: /console in headless Chromium (${o.consoleMinutes} min of live updates, ${o.consoleRows} connections held)`);
    consoleResult = await measureConsole(ROOT, tmp, tools, consoleOptions);
    if (consoleResult.status !== 'measured') failed = true;
  }
  if (o.only.has('lab')) {
    log('lab: measuring MPTCP/TCP ratio');
    lab = await runLab(o.labTimeout * 1000, log);
    log(`lab: ${lab.status === 'measured' ? `${lab.ratio.toFixed(2)}x (TCP ${lab.tcpMbps} Mbit/s, MPTCP ${lab.mptcpMbps} Mbit/s)` : `${lab.status}: ${lab.reason}`}`);
  }
  if (o.only.has('hybrid')) {
    log('hybrid: intercepting router -> two uplinks -> concentrator');
    hybrid = (await withTimeout(measureHybrid({ log }), o.labTimeout * 1000)) ?? { status: 'error', reason: `did not finish within ${o.labTimeout} s` };
    log(`hybrid: ${hybrid.status === 'measured' ? `${hybrid.ratio.toFixed(2)}x, failover stall ${hybrid.stallSeconds.toFixed(2)} s` : `${hybrid.status}: ${hybrid.reason}`}`);
  }
  if (o.only.has('paths')) {
    log("paths: edgeward's path manager: ndiffports on ECMP, fullmesh and a backup uplink");
    paths = (await withTimeout(measurePaths({ log }), o.labTimeout * 1000)) ?? { status: 'error', reason: `did not finish within ${o.labTimeout} s` };
    log(`paths: ${paths.status === 'measured' ? `ndiffports ${paths.ecmp.ratio.toFixed(2)}x, fullmesh ${paths.fullmesh.ratio.toFixed(2)}x, backup stall ${paths.backup.stallMs} ms` : `${paths.status}: ${paths.reason}`}`);
  }
  machine.loadavgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);

  // a column that ran but produced nothing at all is a bench failure, not a MISS
  for (const t of targets.filter((x) => !x.unavailable)) {
    const all = [...(tp ? [...tp.records.up, ...tp.records.down] : []), ...(cps?.records ?? [])].filter((r) => r.target === t.name);
    if (all.length > 0 && all.every((r) => r.error)) {
      failed = true;
      log(`${t.name}: every sample failed, e.g. ${all[0]?.error}`);
    }
  }

  const rows = buildRows(targets, tp, cps, lab, hybrid, paths);
  const table = formatTable(rows);
  const notes: string[] = [];
  if (tp) notes.push(`throughput: ${tp.method}, single stream, ${o.seconds} s after 1 omitted s${tp.fallbackReason ? ` (fallback: ${tp.fallbackReason})` : ''}`);
  if (cps) notes.push(`connections/s: cps.c -> echo-server.c, concurrency ${cps.concurrency} (the one-client row: 1), ${cps.payload}-byte echo, ${cps.seconds} s, sources/destinations spread over ${cps.spread} loopback addresses`);
  notes.push(congestionNote(machine.congestion as CongestionInfo, LAB_PARTS.filter((p) => o.only.has(p))));
  if (rows.length > 0 || turn) notes.push(`rounds: ${o.rounds} after a warm-up, columns in rotating order; table = median`);
  notes.push(`load average: ${(machine.loadavgStart as number[]).join(' ')} at start, ${(machine.loadavgEnd as number[]).join(' ')} at end (${machine.cores} cores)`);
  if (hybrid && hybrid.status !== 'measured') notes.push(`hybrid: ${hybrid.status}: ${hybrid.reason}`);
  if (hybrid?.status === 'measured') notes.push(`hybrid: TCP ${hybrid.tcpMbps.toFixed(1)} Mbit/s, MPTCP ${hybrid.mptcpMbps.toFixed(1)} Mbit/s (two 50 Mbit/s uplinks); the failover download averaged ${hybrid.failoverMbps.toFixed(1)} Mbit/s`);
  if (paths?.status === 'measured') {
    notes.push(`paths: ECMP one subflow ${paths.ecmp.singleMbps.toFixed(1)} Mbit/s, ndiffports ${paths.ecmp.ndiffportsMbps.toFixed(1)} Mbit/s (${paths.ecmp.subflows} subflows, ${paths.ecmp.perLink.join('/')} per link); fullmesh ${paths.fullmesh.fullmeshMbps.toFixed(1)} against one path ${paths.fullmesh.singleMbps.toFixed(1)} Mbit/s (two 50 Mbit/s links each)`);
  } else if (paths) notes.push(`paths: ${paths.status}: ${paths.reason}`);
  if (lab && lab.status !== 'measured') notes.push(`lab: ${lab.status === 'not available' ? 'not available' : `${lab.status}: ${lab.reason}`}`);

  if (profile) notes.push(`edgeward ran under --cpu-prof (slower than usual); profiles, one per thread: ${profile.dir}`);
  if (o.edgewardArgs.length > 0) notes.push(`edgeward started with ${o.edgewardArgs.join(' ')}`);
  if (turn) notes.push(...turnNotes(turn, o.rounds));
  let output = '';
  if (rows.length > 0) output += `\n${table}\n`;
  const socksRounds = roundsText(targets, tp, cps);
  if (socksRounds) output += `\nrounds:\n${socksRounds}\n`;
  if (turn) output += `\nTURN (${turn.servers.map((s) => `${s.name} ${s.port ? `127.0.0.1:${s.port}` : s.unavailable}`).join(', ')}):\n${formatTable(buildTurnRows(turn), TURN_SERVER_NAMES, 'edgeward/coturn')}\n\nTURN rounds:\n${turnRoundsText(turn)}\n`;
  if (rendezvous) {
    output += `\nRendezvous (edgeward peer device|connect on loopback, werift):\n${formatRendezvous(rendezvous, rendezvousOptions)}\n`;
    notes.push("rendezvous: peers offer host candidates on 127.0.0.1 (--ice-address); first byte = from spawning `edgeward peer connect` (Node start, login, signaling, ICE, DTLS, SCTP), or `ssh -N -L` (key exchange, login), to the first byte of the device service's banner through the forward; relayed = the client --relay-only through edgeward's TURN; relayed via coturn = a second device and the client both given coturn with --ice-server (REST credentials), the client --relay-only; ssh -L = OpenSSH's client to an sshd on 127.0.0.1 with the default cipher");
  }
  if (shield) {
    output += `\nShield (router mode in network namespaces; one run per column, attacks bounded):\n${formatShield(shield)}\n`;
    notes.push('shield: the legit client makes 200 connections (10 at a time) during the SYN flood, sends 100 datagrams/s during the UDP flood, 40 GETs (4 at a time, 3 s each at most) 5 s into slowloris; "none" is the backend as the lab builds it (no SYN cookies, listen backlog 16; nginx with 64 connections)');
  }
  if (consoleResult) {
    output += `\nConsole (/console in headless Chromium; edgeward only: no peer has a UI):\n${formatConsole(consoleResult)}\n`;
    notes.push(...consoleNotes(consoleResult, consoleOptions));
  }
  output += `\n${notes.map((n) => `- ${n}`).join('\n')}\n`;
  if (profile) {
    output += `\nedgeward CPU profile, its ${profile.workerThreads} worker threads together (the data plane; whole run, self time):\n${formatProfile(profile.workers)}\n`;
    output += `\nedgeward CPU profile, main thread (start-up, API, store; whole run, self time):\n${formatProfile(profile.main)}\n`;
  }
  process.stdout.write(output);

  const json = {
    timestamp: started.toISOString(),
    finished: new Date().toISOString(),
    machine,
    settings: { rounds: o.rounds, throughputSeconds: o.seconds, cpsSeconds: o.cpsSeconds, concurrency: o.concurrency, spread: o.spread, turnSeconds: o.turnSeconds, turnConcurrency: o.turnConcurrency, consoleMinutes: o.consoleMinutes, consoleRows: o.consoleRows, parts: [...o.only] },
    targets: targets.map((t) => ({ name: t.name, ...(t.socksPort ? { socksPort: t.socksPort } : {}), ...(t.unavailable ? { unavailable: t.unavailable } : {}) })),
    table: rows,
    throughput: tp,
    connections: cps,
    lab: lab ?? null,
    hybrid: hybrid ?? null,
    turn: turn ? { ...turn, table: buildTurnRows(turn) } : null,
    rendezvous: rendezvous ?? null,
    shield: shield ?? null,
    console: consoleResult ?? null,
    edgewardProfile: profile ?? null,
    notes,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const text = JSON.stringify(json, null, 2) + '\n';
  writeFileSync(join(RESULTS_DIR, 'latest.json'), text);
  writeFileSync(join(RESULTS_DIR, `${started.toISOString().replace(/[:.]/g, '-')}.json`), text);
  log(`wrote bench/results/latest.json`);
  if (failed) log('the bench could not measure everything it should have (see above): exit code 1');
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err) => {
    process.stderr.write(`bench: failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
