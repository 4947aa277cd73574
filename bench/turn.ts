// `npm run bench -- --only turn`: edgeward's TURN server next to coturn, in one run.
//   1. relayed traffic: the same turnutils_uclient loads through each server to turnutils_peer
//      (bench/turn-relay.ts): echoed messages/s, Mbit/s each way, loss, server CPU per message;
//   2. allocations/s: our own client (bench/turn-alloc.ts): 401 -> authenticated Allocate ->
//      ChannelBind -> Refresh 0, many in flight; server CPU per allocation.
// Both servers run side by side for the whole part, with the same REST secret and realm; within
// each round they take turns in rotating order, after a warm-up. The table shows medians.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { measureAllocations, type AllocSample } from './turn-alloc.js';
import { measureRelay, type RelayLoad, type RelaySample } from './turn-relay.js';
import { startCoturn, startEchoPeer, startEdgewardTurn, TURN_SERVER_NAMES, type EchoPeer, type TurnServer, type TurnServerName } from './turn-servers.js';
import { cpuTimes, hostBusySeconds, which } from './procs.js';
import { median, spread, type Row } from './report.js';

/** The reference load (client-bound: coturn echoed ~8300 msgs/s) and one the servers cannot keep up with. */
export const RELAY_LOADS: readonly RelayLoad[] = [
  { name: 'reference', bytes: 1000, clients: 100, messages: 500, intervalMs: 1, processes: 1 },
  { name: 'burst', bytes: 1000, clients: 50, messages: 2000, intervalMs: 0, processes: 1 },
];

/** edgeward/coturn bars (delivered rate at least, loss at most + LOSS_TOLERANCE_PP, CPU at most). */
export const TURN_GOALS = {
  /** echoed msgs/s: edgeward at least this share of coturn's */
  rate: 0.95,
  /** loss: edgeward's may exceed coturn's by this many percentage points */
  lossPp: 0.1,
  /** server CPU per echoed message: at most this many times coturn's (stretch: STRETCH) */
  cpu: 2.0,
  cpuStretch: 1.0,
  /** allocations/s: at least coturn's */
  alloc: 1.0,
};

export interface TurnOptions {
  rounds: number;
  /** seconds of allocation load per sample */
  allocSeconds: number;
  /** allocations in flight */
  concurrency: number;
  /** relay loads to run (names from RELAY_LOADS) */
  loads: readonly RelayLoad[];
  clockTicks: number;
}

export interface TurnRecord<T> {
  /** -1 = warm-up */
  round: number;
  server: TurnServerName;
  sample?: T;
  error?: string;
  /** for the allocation samples: server CPU over the sample */
  serverCpuSeconds?: { user: number; sys: number };
  /** the whole machine's busy CPU over the sample, in cores (2 = both cores busy): other people's work shows here */
  hostBusyCores?: number;
  wallSeconds: number;
}

export interface TurnResult {
  servers: { name: TurnServerName; port?: number; unavailable?: string }[];
  /** why relayed traffic was not measured at all (uclient or the peer missing) */
  relayUnavailable?: string;
  peerPort?: number;
  loads: readonly RelayLoad[];
  relay: Record<string, TurnRecord<RelaySample>[]>;
  alloc: { concurrency: number; seconds: number; records: TurnRecord<AllocSample>[]; warmups: TurnRecord<AllocSample>[] };
  /** a server that exists would not start, or every sample of a column failed */
  failed: boolean;
  failures: string[];
}

function rotate<T>(xs: readonly T[], by: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + by) % n]!);
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function describeLoad(l: RelayLoad): string {
  return `${l.processes > 1 ? `${l.processes} x ` : ''}uclient -l ${l.bytes} -c -m ${l.clients} -n ${l.messages} -z ${l.intervalMs}`;
}

/** A UDP port nobody answers on, for ChannelBind when there is no echo peer (nothing is sent to it). */
async function placeholderPeer(): Promise<{ port: number; close: () => void }> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return { port: s.address().port, close: () => s.close() };
}

async function allocSample(server: TurnServer, round: number, peerPort: number, secret: string, seconds: number, o: TurnOptions): Promise<TurnRecord<AllocSample>> {
  const rec: TurnRecord<AllocSample> = { round, server: server.name, wallSeconds: 0 };
  const pid = server.proc!.pid;
  const c0 = cpuTimes(pid, o.clockTicks);
  const h0 = hostBusySeconds(o.clockTicks);
  const t0 = performance.now();
  try {
    rec.sample = await measureAllocations({ serverPort: server.port!, peerPort, secret, concurrency: o.concurrency, seconds });
  } catch (e) {
    rec.error = e instanceof Error ? e.message : String(e);
  }
  rec.wallSeconds = round3((performance.now() - t0) / 1000);
  const h1 = hostBusySeconds(o.clockTicks);
  if (h0 !== undefined && h1 !== undefined && rec.wallSeconds > 0) rec.hostBusyCores = round3((h1 - h0) / rec.wallSeconds);
  const c1 = cpuTimes(pid, o.clockTicks);
  if (c0 && c1) rec.serverCpuSeconds = { user: round3(c1.user - c0.user), sys: round3(c1.sys - c0.sys) };
  if (server.proc!.status()) rec.error = (rec.error ? rec.error + '; ' : '') + `${server.name} exited: ${server.proc!.stderr().trim().slice(-300)}`;
  return rec;
}

async function relaySample(server: TurnServer, round: number, load: RelayLoad, peer: { port: number; pid: number }, secret: string, o: TurnOptions): Promise<TurnRecord<RelaySample>> {
  const rec: TurnRecord<RelaySample> = { round, server: server.name, wallSeconds: 0 };
  const h0 = hostBusySeconds(o.clockTicks);
  const t0 = performance.now();
  try {
    rec.sample = await measureRelay(load, server.port!, server.proc!.pid, peer, secret, o.clockTicks);
  } catch (e) {
    rec.error = e instanceof Error ? e.message : String(e);
  }
  rec.wallSeconds = round3((performance.now() - t0) / 1000);
  const h1 = hostBusySeconds(o.clockTicks);
  if (h0 !== undefined && h1 !== undefined && rec.wallSeconds > 0) rec.hostBusyCores = round3((h1 - h0) / rec.wallSeconds);
  if (server.proc!.status()) rec.error = (rec.error ? rec.error + '; ' : '') + `${server.name} exited: ${server.proc!.stderr().trim().slice(-300)}`;
  return rec;
}

/** Starts both servers and the echo peer, runs every sample, stops what it started; never throws for a sample. */
export async function measureTurn(root: string, tmp: string, o: TurnOptions, log: (line: string) => void): Promise<TurnResult> {
  const secret = randomBytes(18).toString('base64url');
  const result: TurnResult = {
    servers: [],
    loads: o.loads,
    relay: Object.fromEntries(o.loads.map((l) => [l.name, []])),
    alloc: { concurrency: o.concurrency, seconds: o.allocSeconds, records: [], warmups: [] },
    failed: false,
    failures: [],
  };
  const servers: TurnServer[] = [];
  let peer: EchoPeer | undefined;
  let placeholder: { port: number; close: () => void } | undefined;
  try {
    servers.push(await startEdgewardTurn(root, tmp, secret), await startCoturn(tmp, secret));
    for (const s of servers) {
      result.servers.push({ name: s.name, ...(s.port ? { port: s.port } : {}), ...(s.unavailable ? { unavailable: s.unavailable } : {}) });
      if (s.unavailable) log(`turn: ${s.name}: ${s.unavailable}`);
      else log(`turn: ${s.name} on 127.0.0.1:${s.port} (pid ${s.proc?.pid})`);
      if (s.startFailed) {
        result.failed = true;
        result.failures.push(`${s.name}: ${s.unavailable}`);
      }
    }
    const live = servers.filter((s) => !s.unavailable);
    if (!which('turnutils_uclient')) result.relayUnavailable = 'uclient not installed';
    else if (!which('turnutils_peer')) result.relayUnavailable = 'turnutils_peer not installed';
    if (which('turnutils_peer')) {
      peer = await startEchoPeer();
      result.peerPort = peer.port;
      log(`turn: turnutils_peer on 127.0.0.1:${peer.port} (pid ${peer.proc.pid})`);
    } else {
      placeholder = await placeholderPeer();
    }
    const peerPort = peer?.port ?? placeholder!.port;

    // warm-up: a short allocation load on each server (JIT, caches), not in the medians
    for (const s of live) {
      const rec = await allocSample(s, -1, peerPort, secret, 1, o);
      result.alloc.warmups.push(rec);
      log(`turn: warm-up allocations/s ${s.name}: ${rec.sample ? rec.sample.perSecond.toFixed(0) : `error: ${rec.error}`}`);
    }
    for (let r = 0; r < o.rounds; r++) {
      const order = rotate(live, r);
      if (!result.relayUnavailable && peer) {
        for (const load of o.loads) {
          for (const s of order) {
            const rec = await relaySample(s, r, load, { port: peer.port, pid: peer.proc.pid }, secret, o);
            result.relay[load.name]!.push(rec);
            const x = rec.sample;
            log(
              `turn: round ${r + 1}/${o.rounds} ${load.name} load ${s.name}: ` +
                (x
                  ? `${x.echoedPerSecond.toFixed(0)} echoed/s, lost ${x.lost}/${x.sent} (${x.lossPercent.toFixed(3)} %; receive-buffer drops: server ${x.serverAllSocketDrops} (listening socket ${x.serverSocketDrops}), peer ${x.peerSocketDrops}, host-wide ${x.hostRcvbufErrors}), ${x.cpuPerMessageUs.toFixed(1)} us CPU/msg, connect ${x.connectSeconds.toFixed(1)} s`
                  : `error: ${rec.error}`),
            );
          }
        }
      }
      for (const s of order) {
        const rec = await allocSample(s, r, peerPort, secret, o.allocSeconds, o);
        result.alloc.records.push(rec);
        const x = rec.sample;
        log(
          `turn: round ${r + 1}/${o.rounds} allocations ${s.name}: ` +
            (x
              ? `${x.perSecond.toFixed(0)}/s (errors ${x.errorsTotal}, retransmits ${x.retransmits}, p99 ${x.latencyMs.p99} ms; CPU in cores: server ${rec.serverCpuSeconds ? ((rec.serverCpuSeconds.user + rec.serverCpuSeconds.sys) / rec.wallSeconds).toFixed(2) : '?'}, client ${x.clientCpuCores}, whole machine ${rec.hostBusyCores ?? '?'})`
              : `error: ${rec.error}`),
        );
      }
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await peer?.proc.stop(2000);
    placeholder?.close();
  }
  // a column that ran but produced nothing at all is a bench failure, not a MISS
  for (const s of servers.filter((x) => !x.unavailable)) {
    const all = [...Object.values(result.relay).flat(), ...result.alloc.records].filter((r) => r.server === s.name);
    if (all.length > 0 && all.every((r) => r.error)) {
      result.failed = true;
      result.failures.push(`${s.name}: every TURN sample failed, e.g. ${all[0]?.error}`);
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// summary

type Cells = Record<TurnServerName, string>;

function values<T>(records: TurnRecord<T>[], server: TurnServerName, pick: (s: T, r: TurnRecord<T>) => number | undefined): number[] {
  return records.filter((r) => r.server === server && r.sample).flatMap((r) => {
    const v = pick(r.sample!, r);
    return v === undefined || !Number.isFinite(v) ? [] : [v];
  });
}

/** What a column shows when it has no number. */
function why(result: TurnResult, records: TurnRecord<unknown>[], server: TurnServerName, relay: boolean): string {
  const s = result.servers.find((x) => x.name === server);
  if (s?.unavailable) return s.unavailable;
  if (relay && result.relayUnavailable) return result.relayUnavailable;
  return records.some((r) => r.server === server && r.error) ? 'error' : '-';
}

interface RowSpec<T> {
  metric: string;
  records: TurnRecord<T>[];
  relay: boolean;
  digits: number;
  pick: (s: T, r: TurnRecord<T>) => number | undefined;
  /** sum over rounds instead of the median */
  sum?: boolean;
  /** 'min': ratio must be >= value; 'max': <= value; 'loss': edgeward <= coturn + value (percentage points) */
  goal?: { kind: 'min' | 'max' | 'loss'; value: number; stretch?: number };
  /** no ratio column */
  noRatio?: boolean;
}

function row<T>(result: TurnResult, spec: RowSpec<T>): Row<TurnServerName> {
  const cells = {} as Cells;
  const med = {} as Partial<Record<TurnServerName, number>>;
  for (const name of TURN_SERVER_NAMES) {
    const vs = values(spec.records, name, spec.pick);
    const m = spec.sum ? (vs.length > 0 ? vs.reduce((a, b) => a + b, 0) : undefined) : median(vs);
    if (m !== undefined) med[name] = m;
    cells[name] = m !== undefined ? m.toFixed(spec.digits) : why(result, spec.records as TurnRecord<unknown>[], name, spec.relay);
  }
  const out: Row<TurnServerName> = { metric: spec.metric, cells, result: '' };
  const e = med.edgeward;
  const c = med.coturn;
  if (!spec.noRatio && e !== undefined && c !== undefined && c > 0) out.ratio = e / c;
  const g = spec.goal;
  if (g) {
    if (g.kind === 'loss') {
      out.goalLabel = `<= coturn + ${g.value} pp`;
      out.result = e === undefined || c === undefined ? 'n/a' : e <= c + g.value ? 'PASS' : 'MISS';
    } else if (g.kind === 'min') {
      out.goalLabel = `>= ${g.value.toFixed(2)}x`;
      out.result = out.ratio === undefined ? 'n/a' : out.ratio >= g.value ? 'PASS' : 'MISS';
    } else {
      out.goalLabel = `<= ${g.value.toFixed(1)}x` + (g.stretch !== undefined ? ` (stretch ${g.stretch.toFixed(1)}x)` : '');
      if (out.ratio === undefined) out.result = 'n/a';
      else if (out.ratio > g.value) out.result = 'MISS';
      else out.result = g.stretch === undefined ? 'PASS' : out.ratio <= g.stretch ? 'PASS, stretch PASS' : 'PASS, stretch MISS';
    }
  }
  return out;
}

/** The TURN table: per relay load, then allocations. */
export function buildTurnRows(result: TurnResult): Row<TurnServerName>[] {
  const rows: Row<TurnServerName>[] = [];
  for (const load of result.loads) {
    const recs = result.relay[load.name] ?? [];
    const relayRow = (metric: string, digits: number, pick: (s: RelaySample, r: TurnRecord<RelaySample>) => number | undefined, goal?: RowSpec<RelaySample>['goal'], extra: Partial<RowSpec<RelaySample>> = {}): void =>
      void rows.push(row(result, { metric, records: recs, relay: true, digits, pick, ...(goal ? { goal } : {}), ...extra }));
    relayRow(`${load.name} load: echoed msgs/s`, 0, (s) => s.echoedPerSecond, { kind: 'min', value: TURN_GOALS.rate });
    relayRow(`  loss (%)`, 3, (s) => s.lossPercent, { kind: 'loss', value: TURN_GOALS.lossPp }, { noRatio: true });
    relayRow(`  server CPU/echoed msg (us)`, 1, (s) => s.cpuPerMessageUs, { kind: 'max', value: TURN_GOALS.cpu, stretch: TURN_GOALS.cpuStretch });
    relayRow(`  Mbit/s client->peer`, 1, (s) => s.upMbps);
    relayRow(`  Mbit/s peer->client`, 1, (s) => s.downMbps);
    // where the loss happened: receive-buffer drops by socket owner, summed over the rounds
    relayRow(`  dropped: server listening socket`, 0, (s) => s.serverSocketDrops, undefined, { sum: true, noRatio: true });
    relayRow(`  dropped: server relay sockets`, 0, (s) => Math.max(0, s.serverAllSocketDrops - s.serverSocketDrops), undefined, { sum: true, noRatio: true });
    relayRow(`  dropped: peer`, 0, (s) => s.peerSocketDrops, undefined, { sum: true, noRatio: true });
    relayRow(`  dropped: elsewhere (uclient, other programs)`, 0, (s) => Math.max(0, s.hostRcvbufErrors - s.serverAllSocketDrops - s.peerSocketDrops), undefined, { sum: true, noRatio: true });
    relayRow(`  uclient connect phase (s)`, 1, (s) => s.connectSeconds);
    relayRow(`  machine busy, whole run (cores of 2)`, 2, (_s, r) => r.hostBusyCores, undefined, { noRatio: true });
  }
  const recs = result.alloc.records;
  const allocRow = (metric: string, digits: number, pick: (s: AllocSample, r: TurnRecord<AllocSample>) => number | undefined, goal?: RowSpec<AllocSample>['goal'], extra: Partial<RowSpec<AllocSample>> = {}): void =>
    void rows.push(row(result, { metric, records: recs, relay: false, digits, pick, ...(goal ? { goal } : {}), ...extra }));
  allocRow(`allocations/s (${result.alloc.concurrency} in flight)`, 0, (s) => s.perSecond, { kind: 'min', value: TURN_GOALS.alloc });
  allocRow('  server CPU/allocation (us)', 0, (s, r) => (r.serverCpuSeconds && s.allocations > 0 ? ((r.serverCpuSeconds.user + r.serverCpuSeconds.sys) / s.allocations) * 1e6 : undefined));
  allocRow('  allocation latency p99 (ms)', 1, (s) => s.latencyMs.p99);
  allocRow('  errors + timeouts (all rounds)', 0, (s) => s.errorsTotal, undefined, { sum: true, noRatio: true });
  allocRow('  load client CPU (cores)', 2, (s) => s.clientCpuCores, undefined, { noRatio: true });
  // what neither the server nor the client used: other processes (people) on the machine
  allocRow('  other processes\' CPU (cores)', 2, (s, r) => (r.hostBusyCores !== undefined && r.serverCpuSeconds ? Math.max(0, r.hostBusyCores - s.clientCpuCores - (r.serverCpuSeconds.user + r.serverCpuSeconds.sys) / r.wallSeconds) : undefined), undefined, { noRatio: true });
  return rows;
}

/** Every round's figure per server, with the spread, for the text under the table. */
export function turnRoundsText(result: TurnResult): string {
  const lines: string[] = [];
  const add = <T>(what: string, records: TurnRecord<T>[], value: (s: T, r: TurnRecord<T>) => number, digits: number): void => {
    for (const name of TURN_SERVER_NAMES) {
      const mine = records.filter((r) => r.server === name);
      if (mine.length === 0) continue;
      const vals = mine.flatMap((r) => (r.sample ? [value(r.sample, r)] : []));
      const sp = spread(vals);
      const shown = mine.map((r) => (r.sample ? value(r.sample, r).toFixed(digits) : 'err')).join(' ');
      lines.push(`  ${what.padEnd(28)} ${name.padEnd(10)} ${shown}${sp !== undefined ? `   (spread ${(sp * 100).toFixed(0)}%)` : ''}`);
    }
  };
  for (const load of result.loads) {
    add(`${load.name} echoed msgs/s`, result.relay[load.name] ?? [], (s) => s.echoedPerSecond, 0);
    add(`${load.name} loss %`, result.relay[load.name] ?? [], (s) => s.lossPercent, 3);
    add(`${load.name} CPU/msg us`, result.relay[load.name] ?? [], (s) => s.cpuPerMessageUs, 1);
  }
  add('allocations/s', result.alloc.records, (s) => s.perSecond, 0);
  add('CPU/allocation us', result.alloc.records, (s, r) => (r.serverCpuSeconds ? ((r.serverCpuSeconds.user + r.serverCpuSeconds.sys) / s.allocations) * 1e6 : NaN), 0);
  add('machine busy (cores)', result.alloc.records, (_s, r) => r.hostBusyCores ?? NaN, 2);
  return lines.join('\n');
}

/** Notes under the TURN table: loads, how figures are taken, errors seen. */
export function turnNotes(result: TurnResult, rounds: number): string[] {
  const notes: string[] = [];
  for (const l of result.loads) notes.push(`turn ${l.name} load: ${describeLoad(l)} -> turnutils_peer, same secret on both servers (REST credentials via -W)`);
  notes.push(
    'turn: echoed msgs/s = echoes received / (end of uclient\'s connect phase -> last echo, to within its 1 s progress lines); ' +
      'it includes uclient\'s random 1-6 s start offsets, so a load that a server keeps up with shows the client\'s pace',
  );
  notes.push('turn: server CPU/echoed msg = server user+sys CPU over the transmit phase / echoes (each echo = 2 datagrams in and 2 out at the server)');
  notes.push(`turn: allocations = 401 -> Allocate with MESSAGE-INTEGRITY -> ChannelBind -> Refresh 0, ${result.alloc.concurrency} in flight, ${result.alloc.seconds} s, each on its own socket; ${rounds} round(s) after a warm-up`);
  const errs = new Map<string, number>();
  for (const r of result.alloc.records) for (const [k, n] of Object.entries(r.sample?.errors ?? {})) errs.set(`${r.server}: ${k}`, (errs.get(`${r.server}: ${k}`) ?? 0) + n);
  if (errs.size > 0) notes.push(`turn: allocation errors: ${[...errs].map(([k, n]) => `${k} x${n}`).join(', ')}`);
  for (const recs of [...Object.values(result.relay), result.alloc.records]) {
    for (const r of recs as TurnRecord<unknown>[]) if (r.error) notes.push(`turn: ${r.server} round ${r.round + 1}: ${r.error}`);
  }
  if (result.relayUnavailable) notes.push(`turn: relayed traffic not measured: ${result.relayUnavailable}`);
  return notes;
}
