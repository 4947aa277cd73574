// The shield service: on listen it applies its nftables table (rules.ts) in one transaction and the
// sysctls its SYN defences need (SYN cookies for host-mode services, strict TCP tracking for
// synproxy), then reads the table's counters every second into rates; on close it removes the
// table and puts the sysctls back as they were. Services with `proxy` get an L4 proxy (proxy.ts) on
// a transparent listener per family, started first: the table's TPROXY rules name their ports, and
// the policy routing (divert.ts) delivers the marked packets to them. Its API route shows mode,
// counters, rates, attacks and the proxies as the kernel and the proxies have them.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ApiError } from '../api/errors.js';
import { ErrorBody } from '../api/schemas.js';
import { applyTable, listCounters, listSetElements, removeTable, replaceChain, type NftCounters } from '../kernel/nft.js';
import { NftCounterReader } from '../kernel/nft-counters.js';
import { readConntrackCount, readInterfacePackets, readSynproxyStats, type SynproxyStats } from '../kernel/proc-stats.js';
import { readSysctl, writeSysctl } from '../kernel/sysctl.js';
import type { Logger } from '../log/logger.js';
import type { Service, ServiceDefinition } from '../runtime/service.js';
import type { ShieldEventRecord, Store } from '../store/store.js';
import { EventStream, MAX_SUBSCRIBERS, Webhook } from './alerts.js';
import { ATTACK_KINDS, AttackDetector, KIND_PROTOCOL, signals, type AttackEvent, type AttackKind, type SourceCount } from './detector.js';
import { resolveShield, shieldSection, type ShieldSettings, type ShieldSpec } from './config.js';
import { MAX_TTL_S, ShieldListError, ShieldLists, type ShieldListName } from './lists.js';
import { applyDivertRouting, removeDivertRouting } from './divert.js';
import { SHIELD_CLOSE_REASONS, ShieldProxy, type ShieldProxyStats } from './proxy.js';
import { COUNTERS, FLAG_CLASSES, PROTECT_CHAIN, protectRules, proxyFamilies, renderShieldBody, SAMPLE_SETS, serviceCounters, SHIELD_TABLE, SHIELD_TABLE_NAME, shieldComments, SYNPROXIED_CHAIN, synproxiedRules, tightened } from './rules.js';

/** Seconds between two readings of the counters. */
const POLL_S = 1;

/** The sysctls the spec needs, with the value it needs (this network namespace). */
export function neededSysctls(spec: ShieldSpec): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const tcp = spec.services.filter((s) => s.protocol === 'tcp');
  if (tcp.some((s) => s.syn === 'cookies')) out.push(['net.ipv4.tcp_syncookies', '1']);
  // synproxy needs the handshake's last ACK to stay "invalid" rather than pick up a connection midstream
  if (tcp.some((s) => s.syn === 'synproxy')) out.push(['net.netfilter.nf_conntrack_tcp_loose', '0']);
  return out;
}

export interface CounterReading {
  /** packets per named counter */
  packets: Record<string, number>;
  /** when it was read (ms, monotonic) */
  at: number;
}

/** What the kernel counts besides the table: conntrack, synproxy, the interfaces attacks arrive on. */
export interface KernelView {
  conntrack: number | null;
  synproxy: SynproxyStats | null;
  /** per interface: packets received in all and per second over the last poll */
  interfaces: Record<string, { rxPackets: number; rxPps: number | null; rxDropped: number }>;
}

/** The running shield: what its routes read. */
export interface ShieldService extends Service {
  spec: ShieldSpec;
  lists: ShieldLists;
  /** the last reading, and packets per second since the one before (null before two readings) */
  counters(): { reading: CounterReading | null; rates: Record<string, number> | null };
  /** reads the counters now (the rates stay those of the last poll) */
  snapshot(): Promise<CounterReading | null>;
  kernel(): KernelView;
  /** the attacks going on now */
  attacks(): AttackEvent[];
  /** the L4 proxies of the proxied services (one per family) */
  proxies(): Array<ShieldProxyStats & { family: 4 | 6; port: number }>;
  /** the services running with tightened limits */
  tightened(): string[];
  /** attack events, newest first: those going on as they are now, the others as stored */
  events(opts: { limit: number; kind?: AttackKind }): Promise<AttackEvent[]>;
  stream: EventStream;
  /** attack events started since the shield was applied, per kind */
  started: Record<AttackKind, number>;
}

function packetsOf(c: NftCounters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of c.named) out[n.name] = n.packets;
  return out;
}

function toRecord(e: AttackEvent): ShieldEventRecord {
  return { id: e.id, kind: e.kind, startedAt: e.startedAt, endedAt: e.endedAt, peakPps: e.peakPps, packets: e.packets, details: { layers: e.layers, topSources: e.topSources, distinctSources: e.distinctSources, tightened: e.tightened } };
}

function fromRecord(r: ShieldEventRecord): AttackEvent {
  const d = r.details;
  const layers = typeof d.layers === 'object' && d.layers !== null ? (d.layers as Record<string, number>) : {};
  return {
    id: r.id,
    kind: (ATTACK_KINDS as readonly string[]).includes(r.kind) ? (r.kind as AttackKind) : 'syn_flood',
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    peakPps: r.peakPps,
    packets: r.packets,
    layers,
    topSources: Array.isArray(d.topSources) ? (d.topSources as SourceCount[]) : [],
    distinctSources: typeof d.distinctSources === 'number' ? d.distinctSources : 0,
    tightened: Array.isArray(d.tightened) ? (d.tightened as string[]) : [],
  };
}

/** Readings between two reads of the source sample. */
const SAMPLE_EVERY = 2;
/** Seconds between two writes of an attack that goes on to the store. */
const STORE_EVERY_S = 5;

export function createShield(spec: ShieldSpec, store: Store, logger: Logger): ShieldService {
  const lists = new ShieldLists(store, spec, logger);
  const detector = new AttackDetector({
    threshold: { syn_flood: spec.attackRate, udp_flood: spec.attackRate, tcp_flags: Math.max(1, Math.round(spec.attackRate / 10)) },
    quietMs: spec.attackQuietS * 1000,
  });
  const stream = new EventStream();
  const webhook = spec.webhook ? new Webhook(spec.webhook, logger) : null;
  const started: Record<AttackKind, number> = { syn_flood: 0, udp_flood: 0, tcp_flags: 0 };
  let last: CounterReading | null = null;
  let rates: Record<string, number> | null = null;
  let kernel: KernelView = { conntrack: null, synproxy: null, interfaces: {} };
  let timer: NodeJS.Timeout | undefined;
  let polling = false;
  let applied = false;
  let samplePolls = 0;
  const families = ([4, 6] as const).filter((f) => spec.services.some((s) => s.family === undefined || s.family === f));
  let tight = new Set<string>();
  const storedAt = new Map<AttackEvent, number>();
  const restore: Array<[string, string]> = [];
  const proxies: Array<{ proxy: ShieldProxy; family: 4 | 6; port: number }> = [];
  const proxyFamiliesUsed = ([4, 6] as const).filter((f) => spec.services.some((s) => proxyFamilies(s).includes(f)));
  let routed = false;

  /** Starts a transparent listener per proxied service and family; the divert rules need their ports. */
  const startProxies = async (): Promise<Map<string, Partial<Record<4 | 6, number>>>> => {
    const ports = new Map<string, Partial<Record<4 | 6, number>>>();
    const p = spec.proxy;
    for (const svc of spec.services) {
      for (const family of proxyFamilies(svc)) {
        const proxy = new ShieldProxy({
          name: svc.name,
          listen: { host: family === 4 ? '0.0.0.0' : '::', port: 0, transparent: true },
          backend: 'original',
          // the server writes first (a banner): dial at once, the client has nothing to say yet
          firstByteTimeoutMs: svc.speaksFirst ? 0 : p.firstByteMs,
          minRate: p.minRate > 0 ? { bytesPerSecond: p.minRate, graceMs: p.graceMs } : null,
          zeroWindowTimeoutMs: p.zeroWindowMs,
          perSourceConns: svc.conns,
          maxConns: p.maxConns,
          isPreferred: (a) => lists.isPreferred(a),
          proxyProtocol: svc.proxyProtocol,
          logger,
        });
        const bound = await proxy.listen();
        proxies.push({ proxy, family, port: bound.port });
        ports.set(svc.name, { ...ports.get(svc.name), [family]: bound.port });
      }
    }
    return ports;
  };

  // the counters over netlink (no process per reading); `nft -j list` when that cannot be had
  let reader: NftCounterReader | null | undefined;
  const snapshot = async (): Promise<CounterReading | null> => {
    if (reader === undefined) {
      try {
        reader = new NftCounterReader(SHIELD_TABLE);
      } catch (e) {
        reader = null;
        logger.info('shield: reading the counters with nft (no netlink socket)', { error: (e as Error).message });
      }
    }
    if (reader) {
      try {
        const named = reader.read();
        return named.length > 0 ? { packets: packetsOf({ named, rules: [] }), at: performance.now() } : null;
      } catch (e) {
        logger.warn('shield: cannot read the counters over netlink; with nft from now on', { error: (e as Error).message });
        reader.close();
        reader = null;
      }
    }
    const c = await listCounters(SHIELD_TABLE);
    return c ? { packets: packetsOf(c), at: performance.now() } : null;
  };

  const readKernel = (dtS: number | null): void => {
    const interfaces: KernelView['interfaces'] = {};
    for (const i of spec.interfaces) {
      const p = readInterfacePackets(i);
      if (!p) continue;
      const before = kernel.interfaces[i];
      interfaces[i] = { rxPackets: p.rxPackets, rxDropped: p.rxDropped, rxPps: before && dtS ? Math.max(0, p.rxPackets - before.rxPackets) / dtS : null };
    }
    kernel = { conntrack: readConntrackCount(), synproxy: readSynproxyStats(), interfaces };
  };

  const persist = async (e: AttackEvent): Promise<void> => {
    storedAt.set(e, performance.now());
    try {
      e.id = await store.putShieldEvent(toRecord(e));
    } catch (err) {
      logger.warn('shield: cannot store an attack event', { kind: e.kind, error: (err as Error).message });
    }
  };

  /** Reads the source sample into the attacks going on (every other reading) and into those that just ended. */
  const readSample = async (justEnded: readonly AttackEvent[]): Promise<void> => {
    // listing a full sample costs the CPU a flood is already short of: every other reading
    if (justEnded.length === 0 && (detector.current().length === 0 || ++samplePolls % SAMPLE_EVERY !== 0)) return;
    const targets = [...detector.current(), ...justEnded];
    for (const proto of ['tcp', 'udp'] as const) {
      if (!targets.some((a) => KIND_PROTOCOL[a.kind] === proto)) continue;
      const sampled: SourceCount[] = [];
      for (const f of families) for (const e of (await listSetElements(SHIELD_TABLE, SAMPLE_SETS[proto][f])) ?? []) sampled.push({ address: e.value, packets: e.packets ?? 0 });
      detector.addSources(proto, sampled, targets);
    }
  };

  /** Halves the per-source limits of the services whose protocol is flooded; puts them back after. */
  const adapt = async (): Promise<void> => {
    if (!spec.adapt) return;
    const flooded = new Set(detector.current().filter((a) => a.kind !== 'tcp_flags').map((a) => KIND_PROTOCOL[a.kind]));
    const want = new Set(spec.services.filter((s) => flooded.has(s.protocol)).map((s) => s.name));
    if (want.size === tight.size && [...want].every((n) => tight.has(n))) return;
    await replaceChain(SHIELD_TABLE, PROTECT_CHAIN, protectRules(spec, want));
    if (spec.services.some((s) => s.protocol === 'tcp' && s.syn === 'synproxy')) await replaceChain(SHIELD_TABLE, SYNPROXIED_CHAIN, synproxiedRules(spec, want));
    for (const svc of spec.services) {
      const was = tight.has(svc.name);
      const now = want.has(svc.name);
      if (was === now) continue;
      const t = tightened(svc);
      const [from, to] = now ? [{ rate: svc.rate, conns: svc.conns }, t] : [t, { rate: svc.rate, conns: svc.conns }];
      const why = now ? detector.current().filter((a) => KIND_PROTOCOL[a.kind] === svc.protocol && a.kind !== 'tcp_flags').map((a) => a.kind) : ['the flood ended'];
      logger.info(now ? 'shield: limits tightened' : 'shield: limits relaxed', {
        service: svc.name,
        reason: why.join(', '),
        ratePerSource: `${from.rate} -> ${to.rate}/s`,
        ...(svc.protocol === 'tcp' ? { connsPerSource: `${from.conns} -> ${to.conns}` } : {}),
      });
    }
    tight = want;
    for (const a of detector.current()) if (a.kind !== 'tcp_flags') a.tightened = spec.services.filter((s) => s.protocol === KIND_PROTOCOL[a.kind] && tight.has(s.name)).map((s) => s.name);
  };

  /** Keeps a transition: the store and the log. */
  const record = async (type: 'started' | 'updated' | 'ended', e: AttackEvent): Promise<void> => {
    if (type === 'started') {
      started[e.kind]++;
      await persist(e);
      logger.warn('shield: attack started', { id: e.id, kind: e.kind, pps: e.peakPps, layers: e.layers });
    } else if (type === 'ended') {
      await persist(e);
      storedAt.delete(e);
      logger.warn('shield: attack ended', { id: e.id, kind: e.kind, started: e.startedAt, ended: e.endedAt, peakPps: e.peakPps, packets: e.packets, topSources: e.topSources.slice(0, 3), distinctSources: e.distinctSources });
    } else if (performance.now() - (storedAt.get(e) ?? 0) >= STORE_EVERY_S * 1000) {
      await persist(e);
    }
  };

  /**
   * Tells a transition to the webhook and the event stream, after adapt() has said what it
   * tightened. The stream heard of a start already, as it was detected: it gets an update now.
   */
  const notify = (type: 'started' | 'updated' | 'ended', e: AttackEvent): void => {
    if (type !== 'updated') webhook?.send({ type: `attack.${type}`, shield: { mode: spec.mode, interfaces: spec.interfaces }, attack: e });
    stream.publish('attack', { type: type === 'started' ? 'updated' : type, attack: e });
  };

  const poll = async (): Promise<void> => {
    const reading = await snapshot();
    if (!reading) return;
    const dtS = last ? (reading.at - last.at) / 1000 : null;
    if (last && dtS !== null) {
      const r: Record<string, number> = {};
      for (const [k, v] of Object.entries(reading.packets)) r[k] = dtS > 0 ? Math.max(0, v - (last.packets[k] ?? 0)) / dtS : 0;
      rates = r;
    }
    last = reading;
    readKernel(dtS);
    if (!rates || dtS === null) return;
    const sig = signals(spec, rates);
    const transitions = detector.observe(Date.now(), dtS, sig);
    // a start reaches the event stream (the console) at once: storing it and tightening the limits
    // run nft and SQLite, which take seconds under a flood on a small box
    for (const t of transitions) if (t.type === 'started') stream.publish('attack', { type: 'started', attack: t.event });
    await readSample(transitions.filter((t) => t.type === 'ended').map((t) => t.event));
    for (const t of transitions) await record(t.type, t.event);
    await adapt();
    for (const t of transitions) notify(t.type, t.event);
    if (stream.size > 0) stream.publish('rates', { at: new Date().toISOString(), rates, signals: Object.fromEntries(ATTACK_KINDS.map((k) => [k, Math.round(sig[k].pps)])) });
  };

  const removeAll = async (): Promise<void> => {
    if (timer) clearInterval(timer);
    timer = undefined;
    for (const t of detector.endAll(Date.now())) {
      await record(t.type, t.event);
      notify(t.type, t.event);
    }
    await webhook?.flush(2000);
    webhook?.close();
    stream.close();
    reader?.close();
    reader = undefined;
    if (applied) {
      applied = false;
      await removeTable(SHIELD_TABLE).then(
        () => logger.info('shield removed', { table: SHIELD_TABLE_NAME }),
        (e: unknown) => logger.error('shield: could not remove the table; run `edgeward shield remove`', { error: (e as Error).message }),
      );
    }
    if (routed) {
      routed = false;
      await removeDivertRouting(proxyFamiliesUsed);
    }
    // the table no longer diverts: close what the proxies still relay
    await Promise.all(proxies.splice(0).map((p) => p.proxy.close()));
    for (const [name, value] of restore.splice(0).reverse()) {
      try {
        writeSysctl(name, value);
      } catch (e) {
        logger.warn('shield: could not restore a sysctl', { sysctl: name, value, error: (e as Error).message });
      }
    }
  };

  return {
    spec,
    lists,
    stream,
    started,
    counters: () => ({ reading: last, rates }),
    snapshot,
    kernel: () => kernel,
    attacks: () => detector.current(),
    proxies: () => proxies.map((p) => ({ ...p.proxy.stats(), family: p.family, port: p.port })),
    tightened: () => [...tight],
    async events(opts) {
      const live = detector.current().filter((e) => opts.kind === undefined || e.kind === opts.kind);
      const stored = (await store.listShieldEvents({ limit: opts.limit, ...(opts.kind ? { kind: opts.kind } : {}) })).map(fromRecord);
      const liveIds = new Set(live.map((e) => e.id));
      return [...live, ...stored.filter((e) => !liveIds.has(e.id))].sort((a, b) => b.startedAt.localeCompare(a.startedAt) || b.id - a.id).slice(0, opts.limit);
    },
    async listen() {
      let ports: Map<string, Partial<Record<4 | 6, number>>>;
      try {
        ports = await startProxies();
      } catch (e) {
        await removeAll();
        throw new Error(`shield: the proxy cannot listen: ${(e as Error).message}`);
      }
      await applyTable(SHIELD_TABLE, renderShieldBody(spec, new Set(), ports), { comments: shieldComments(spec) }).catch(async (e: unknown) => {
        await removeAll();
        throw new Error(`shield: ${(e as Error).message}`);
      });
      applied = true;
      try {
        if (proxyFamiliesUsed.length > 0) {
          routed = true;
          await applyDivertRouting(proxyFamiliesUsed);
        }
        for (const [name, value] of neededSysctls(spec)) {
          const before = readSysctl(name);
          if (before === value) continue;
          writeSysctl(name, value);
          if (before !== null) restore.push([name, before]);
          logger.info('shield: sysctl set', { sysctl: name, value, was: before });
        }
        const loaded = await lists.load();
        if (loaded > 0) logger.info('shield: hand-made list entries loaded', { entries: loaded });
        await poll();
      } catch (e) {
        await removeAll();
        throw new Error(`shield: ${(e as Error).message}`);
      }
      timer = setInterval(() => {
        if (polling) return;
        polling = true;
        poll()
          .catch((e: unknown) => logger.warn('shield: cannot read the counters', { error: (e as Error).message }))
          .finally(() => {
            polling = false;
          });
      }, POLL_S * 1000);
      timer.unref();
      logger.info('shield applied', {
        table: SHIELD_TABLE_NAME,
        mode: spec.mode,
        services: spec.services.map((s) => s.name),
        interfaces: spec.interfaces,
        ...(webhook ? { webhook: webhook.url } : {}),
        ...(proxies.length > 0 ? { proxies: proxies.map((p) => `${p.proxy.stats().name} (IPv${p.family}) -> port ${p.port}`) } : {}),
      });
      return { shield: spec.mode, shieldServices: spec.services.map((s) => s.name) };
    },
    // the packet layer keeps protecting while other services drain; the proxies go on relaying
    stopAccepting: async () => undefined,
    close: removeAll,
  };
}

const ShieldAttack = Type.Object(
  {
    id: Type.Integer(),
    kind: Type.Union(ATTACK_KINDS.map((k) => Type.Literal(k))),
    startedAt: Type.String(),
    endedAt: Type.Union([Type.String(), Type.Null()], { description: 'null while it goes on' }),
    peakPps: Type.Integer({ description: 'the highest attack packets per second of one reading' }),
    packets: Type.Integer({ description: 'attack packets over the event' }),
    layers: Type.Record(Type.String(), Type.Integer(), { description: 'the peak rate of each counter that made up the attack' }),
    topSources: Type.Array(Type.Object({ address: Type.String(), packets: Type.Integer() }), { description: 'the sources that sent the most, sampled while it went on' }),
    distinctSources: Type.Integer({ description: 'distinct sources in the sample at its fullest (at most 4096)' }),
    tightened: Type.Array(Type.String(), { description: 'services whose limits were tightened for it' }),
  },
  { description: 'an attack event' },
);

const Rates = Type.Record(Type.String(), Type.Number(), { description: 'packets per second over the last second' });
const ShieldStatus = Type.Object({
  mode: Type.Union([Type.Literal('host'), Type.Literal('router')]),
  table: Type.String({ description: 'the nftables table the shield owns' }),
  loaded: Type.Boolean({ description: 'the table is in the kernel' }),
  interfaces: Type.Array(Type.String()),
  flags: Type.Record(Type.String(), Type.Integer(), { description: 'packets dropped per TCP flag class since the table was applied' }),
  blocked: Type.Object({ manual: Type.Integer(), meter: Type.Integer(), globalCap: Type.Integer() }, { description: 'packets dropped by the blocklists and the global cap' }),
  allowlisted: Type.Integer({ description: 'packets from allowlisted sources let past the blocklists, meters and caps (after the flag checks)' }),
  services: Type.Array(
    Type.Object({
      name: Type.String(),
      protocol: Type.String(),
      address: Type.Union([Type.String(), Type.Null()]),
      ports: Type.Array(Type.Integer()),
      passed: Type.Integer({ description: 'new connections (tcp) or datagrams (udp) let through' }),
      overRate: Type.Integer({ description: 'dropped by the per-source rate meter (the source went on the blocklist)' }),
      overConns: Type.Integer({ description: 'new connections dropped for the per-source connection limit' }),
      synproxy: Type.Integer({ description: 'handshake packets synproxy answered or consumed' }),
    }),
  ),
  rates: Type.Union([Rates, Type.Null()]),
  attacks: Type.Array(ShieldAttack, { description: 'the attacks going on now' }),
  tightened: Type.Array(Type.String(), { description: 'services running with halved per-source limits while a flood goes on (--shield-adapt)' }),
  proxies: Type.Array(
    Type.Object({
      name: Type.String({ description: 'the service' }),
      family: Type.Union([Type.Literal(4), Type.Literal(6)]),
      port: Type.Integer({ description: "the proxy's transparent listener (the TPROXY rule's target)" }),
      active: Type.Integer({ description: 'connections open now' }),
      accepted: Type.Integer(),
      closed: Type.Record(Type.String(), Type.Integer(), { description: `connections closed or refused by the proxy, by reason (${SHIELD_CLOSE_REASONS.join(', ')})` }),
      bytes: Type.Object({ clientToBackend: Type.Integer(), backendToClient: Type.Integer() }),
      sources: Type.Integer(),
      suspects: Type.Integer({ description: 'sources that misbehaved in the last minute (served after the others at the cap)' }),
    }),
    { description: 'the L4 proxies of the services with proxy' },
  ),
  kernel: Type.Object({
    conntrack: Type.Union([Type.Integer(), Type.Null()], { description: 'entries in the conntrack table' }),
    synproxy: Type.Union([Type.Record(Type.String(), Type.Integer()), Type.Null()], { description: '/proc/net/stat/synproxy summed over the CPUs' }),
    interfaces: Type.Record(Type.String(), Type.Object({ rxPackets: Type.Integer(), rxPps: Type.Union([Type.Number(), Type.Null()]), rxDropped: Type.Integer() })),
  }),
});

export const shieldService: ServiceDefinition<ShieldSettings, ShieldService> = {
  name: 'shield',
  section: shieldSection,
  everyThread: false,
  enabled: (s) => s.shieldService.length > 0,
  create: (ctx) => {
    const shield = createShield(resolveShield(ctx.settings), ctx.parts.store, ctx.logger);
    const m = ctx.parts.metrics;
    const packets = (name: string): number => shield.counters().reading?.packets[name] ?? 0;
    m.counter({ name: 'edgeward_shield_flag_drops_total', help: 'TCP packets the shield dropped for an invalid flag combination, by class.', labels: ['class'], read: () => FLAG_CLASSES.map((k) => [{ class: k.counter.replace(/^flags_/, '') }, packets(k.counter)]) });
    m.counter({ name: 'edgeward_shield_blocked_total', help: 'Packets dropped from blocklisted sources (list: manual or meter) and by the global cap (list: global_cap).', labels: ['list'], read: () => [[{ list: 'manual' }, packets(COUNTERS.blockedManual)], [{ list: 'meter' }, packets(COUNTERS.blockedMeterTcp) + packets(COUNTERS.blockedMeterOther)], [{ list: 'global_cap' }, packets(COUNTERS.globalCapTcp) + packets(COUNTERS.globalCapUdp)]] });
    m.counter({ name: 'edgeward_shield_allowlisted_packets_total', help: 'Packets from allowlisted sources the shield let past its blocklists, meters and caps.', read: () => packets(COUNTERS.allowlisted) });
    m.counter({ name: 'edgeward_shield_attacks_total', help: 'Attack events started, by kind.', labels: ['kind'], read: () => ATTACK_KINDS.map((k) => [{ kind: k }, shield.started[k]]) });
    m.gauge({ name: 'edgeward_shield_attack_active', help: '1 while an attack of this kind goes on.', labels: ['kind'], read: () => ATTACK_KINDS.map((k) => [{ kind: k }, shield.attacks().some((a) => a.kind === k) ? 1 : 0]) });
    m.gauge({ name: 'edgeward_shield_proxy_connections', help: "Connections the shield's L4 proxy holds now, per service.", labels: ['service'], read: () => sumByService(shield.proxies(), (p) => p.active).map(([service, n]) => [{ service }, n]) });
    m.counter({
      name: 'edgeward_shield_proxy_closed_total',
      help: "Connections the shield's L4 proxy closed or refused, per service and reason.",
      labels: ['service', 'reason'],
      read: () => SHIELD_CLOSE_REASONS.flatMap((reason) => sumByService(shield.proxies(), (p) => p.closed[reason]).map(([service, n]) => [{ service, reason }, n] as [Record<string, string>, number])),
    });
    m.counter({
      name: 'edgeward_shield_service_packets_total',
      help: 'Per protected service: new connections or datagrams passed, dropped over the per-source rate, over the per-source connection limit.',
      labels: ['service', 'verdict'],
      read: () => shield.spec.services.flatMap((s) => {
        const c = serviceCounters(s.name);
        return [[{ service: s.name, verdict: 'passed' }, packets(c.passed)], [{ service: s.name, verdict: 'over_rate' }, packets(c.overRate)], [{ service: s.name, verdict: 'over_conns' }, packets(c.overConns)]] as Array<[Record<string, string>, number]>;
      }),
    });
    return shield;
  },
  routes: (shield) => async (app) => {
    for (const list of ['block', 'allow'] as const) registerList(app, shield, list);
    app.get('/shield', { schema: { tags: ['shield'], summary: "The shield's mode, counters and rates, as the kernel has them", response: { 200: ShieldStatus, 503: ErrorBody } } }, async () => {
      const reading = await shield.snapshot().catch((e: unknown) => {
        throw new ApiError(503, 'shield_unreadable', null, `cannot read the shield's counters: ${(e as Error).message}`);
      });
      const p = (n: string): number => reading?.packets[n] ?? 0;
      return {
        mode: shield.spec.mode,
        table: SHIELD_TABLE_NAME,
        loaded: reading !== null,
        interfaces: shield.spec.interfaces,
        flags: Object.fromEntries(FLAG_CLASSES.map((k) => [k.counter.replace(/^flags_/, ''), p(k.counter)])),
        blocked: { manual: p(COUNTERS.blockedManual), meter: p(COUNTERS.blockedMeterTcp) + p(COUNTERS.blockedMeterOther), globalCap: p(COUNTERS.globalCapTcp) + p(COUNTERS.globalCapUdp) },
        allowlisted: p(COUNTERS.allowlisted),
        services: shield.spec.services.map((s) => {
          const c = serviceCounters(s.name);
          return { name: s.name, protocol: s.protocol, address: s.address ?? null, ports: [...s.ports], passed: p(c.passed), overRate: p(c.overRate), overConns: p(c.overConns), synproxy: p(c.synproxy) };
        }),
        rates: shield.counters().rates,
        attacks: shield.attacks(),
        tightened: shield.tightened(),
        proxies: shield.proxies(),
        kernel: { ...shield.kernel(), synproxy: shield.kernel().synproxy as Record<string, number> | null },
      };
    });
    app.get<{ Querystring: Static<typeof EventsQuery> }>('/shield/events', { schema: { tags: ['shield'], summary: 'Attack events, newest first (those going on included)', querystring: EventsQuery, response: { 200: Type.Object({ events: Type.Array(ShieldAttack) }) } } }, async (req) => ({
      events: await shield.events({ limit: req.query.limit === undefined ? 50 : Number(req.query.limit), ...(req.query.kind ? { kind: req.query.kind } : {}) }),
    }));
    app.get('/shield/events/stream', { schema: { tags: ['shield'], summary: 'Server-sent events: `attack` (started, updated each second, ended) and `rates` (each second)', produces: ['text/event-stream'], response: { 503: ErrorBody } } }, async (req, reply) => {
      reply.hijack();
      const ok = shield.stream.subscribe(reply.raw, shield.attacks().map((a) => ({ event: 'attack', data: { type: 'updated', attack: a } })));
      if (!ok) {
        reply.raw.writeHead(503, { 'content-type': 'application/json' });
        reply.raw.end(JSON.stringify({ error: { code: 'too_many_streams', field: null, message: `at most ${MAX_SUBSCRIBERS} event streams at once` } }));
      }
    });
  },
};

/** One figure per service, summed over its families' proxies. */
function sumByService(stats: ShieldProxyStats[], figure: (s: ShieldProxyStats) => number): Array<[string, number]> {
  const out = new Map<string, number>();
  for (const s of stats) out.set(s.name, (out.get(s.name) ?? 0) + figure(s));
  return [...out];
}

const EventsQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^(1000|[1-9][0-9]{0,2})$', title: 'a whole number 1..1000', description: 'at most this many (default 50)' })),
    kind: Type.Optional(Type.Union(ATTACK_KINDS.map((k) => Type.Literal(k)))),
  },
  { additionalProperties: false },
);

const ListEntryView = Type.Object({
  address: Type.String({ description: 'addr/prefix' }),
  source: Type.Union([Type.Literal('manual'), Type.Literal('meter'), Type.Literal('config')], { description: 'manual: added by hand (kept across restarts); meter: a per-source rate meter caught it; config: --shield-allow' }),
  reason: Type.Union([Type.String(), Type.Null()]),
  secondsLeft: Type.Union([Type.Integer(), Type.Null()], { description: 'null: until removed' }),
  createdAt: Type.Union([Type.String(), Type.Null()]),
});
const ListBody = Type.Object(
  {
    address: Type.String({ minLength: 1, maxLength: 64, description: 'an IPv4 or IPv6 address or addr/prefix' }),
    ttl: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TTL_S, description: 'seconds; without it, until removed' })),
    reason: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

function listError(e: unknown): never {
  if (e instanceof ShieldListError) throw new ApiError(e.code === 'from_config' ? 409 : 400, e.code, e.code === 'invalid_address' ? 'address' : e.code === 'invalid_ttl' ? 'ttl' : null, e.message);
  throw new ApiError(503, 'shield_unavailable', null, `the shield's sets cannot be changed: ${(e as Error).message}`);
}

/** GET/POST /shield/{blocklist|allowlist}, DELETE /shield/{...}/ADDRESS (addr/prefix URL-encoded: 10.0.0.0%2F24). */
function registerList(app: Parameters<FastifyPluginAsync>[0], shield: ShieldService, list: ShieldListName): void {
  const path = `/shield/${list}list`;
  const tags = ['shield'];
  const what = list === 'block' ? 'blocklist' : 'allowlist';
  app.get(path, { schema: { tags, summary: `The shield's ${what}`, response: { 200: Type.Object({ entries: Type.Array(ListEntryView) }), 503: ErrorBody } } }, async () => ({ entries: await shield.lists.list(list).catch(listError) }));
  app.post<{ Body: Static<typeof ListBody> }>(path, { schema: { tags, summary: `Add an address or block to the ${what} (kept across restarts)`, body: ListBody, response: { 201: ListEntryView, 400: ErrorBody, 503: ErrorBody } } }, async (req, reply) => {
    const entry = await shield.lists.add(list, req.body.address, req.body.ttl ?? null, req.body.reason ?? null).catch(listError);
    return reply.code(201).send(entry);
  });
  app.delete<{ Params: { address: string } }>(`${path}/:address`, { schema: { tags, summary: `Remove an address or block from the ${what}`, params: Type.Object({ address: Type.String({ minLength: 1, maxLength: 64 }) }), response: { 204: { type: 'null', description: 'removed' }, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody } } }, async (req, reply) => {
    const had = await shield.lists.remove(list, req.params.address).catch(listError);
    if (!had) throw new ApiError(404, 'not_found', 'address', `${req.params.address} is not on the ${what}`);
    return reply.code(204).send();
  });
}
