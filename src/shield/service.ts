// The shield service: on listen it applies its nftables table (rules.ts) in one transaction and the
// sysctls its SYN defences need (SYN cookies for host-mode services, strict TCP tracking for
// synproxy), then reads the table's counters every second into rates; on close it removes the
// table and puts the sysctls back as they were. Its API route shows mode, counters and rates as the
// kernel has them.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ApiError } from '../api/errors.js';
import { ErrorBody } from '../api/schemas.js';
import { applyTable, listCounters, removeTable, type NftCounters } from '../kernel/nft.js';
import { readSysctl, writeSysctl } from '../kernel/sysctl.js';
import type { Logger } from '../log/logger.js';
import type { Service, ServiceDefinition } from '../runtime/service.js';
import type { Store } from '../store/store.js';
import { resolveShield, shieldSection, type ShieldSettings, type ShieldSpec } from './config.js';
import { MAX_TTL_S, ShieldListError, ShieldLists, type ShieldListName } from './lists.js';
import { COUNTERS, FLAG_CLASSES, renderShieldBody, serviceCounters, SHIELD_TABLE, SHIELD_TABLE_NAME, shieldComments } from './rules.js';

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

/** The running shield: what its routes read. */
export interface ShieldService extends Service {
  spec: ShieldSpec;
  lists: ShieldLists;
  /** the last reading, and packets per second since the one before (null before two readings) */
  counters(): { reading: CounterReading | null; rates: Record<string, number> | null };
  /** reads the counters now (the rates stay those of the last poll) */
  snapshot(): Promise<CounterReading | null>;
}

function packetsOf(c: NftCounters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of c.named) out[n.name] = n.packets;
  return out;
}

export function createShield(spec: ShieldSpec, store: Store, logger: Logger): ShieldService {
  const lists = new ShieldLists(store, spec, logger);
  let last: CounterReading | null = null;
  let rates: Record<string, number> | null = null;
  let timer: NodeJS.Timeout | undefined;
  let applied = false;
  const restore: Array<[string, string]> = [];

  const snapshot = async (): Promise<CounterReading | null> => {
    const c = await listCounters(SHIELD_TABLE);
    return c ? { packets: packetsOf(c), at: performance.now() } : null;
  };
  const read = async (): Promise<CounterReading | null> => {
    const reading = await snapshot();
    if (!reading) return null;
    if (last) {
      const dt = (reading.at - last.at) / 1000;
      const r: Record<string, number> = {};
      for (const [k, v] of Object.entries(reading.packets)) r[k] = dt > 0 ? Math.max(0, v - (last.packets[k] ?? 0)) / dt : 0;
      rates = r;
    }
    last = reading;
    return reading;
  };

  const removeAll = async (): Promise<void> => {
    if (timer) clearInterval(timer);
    timer = undefined;
    if (applied) {
      applied = false;
      await removeTable(SHIELD_TABLE).then(
        () => logger.info('shield removed', { table: SHIELD_TABLE_NAME }),
        (e: unknown) => logger.error('shield: could not remove the table; run `edgeward shield remove`', { error: (e as Error).message }),
      );
    }
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
    counters: () => ({ reading: last, rates }),
    snapshot,
    async listen() {
      await applyTable(SHIELD_TABLE, renderShieldBody(spec), { comments: shieldComments(spec) }).catch((e: unknown) => {
        throw new Error(`shield: ${(e as Error).message}`);
      });
      applied = true;
      try {
        for (const [name, value] of neededSysctls(spec)) {
          const before = readSysctl(name);
          if (before === value) continue;
          writeSysctl(name, value);
          if (before !== null) restore.push([name, before]);
          logger.info('shield: sysctl set', { sysctl: name, value, was: before });
        }
        const loaded = await lists.load();
        if (loaded > 0) logger.info('shield: hand-made list entries loaded', { entries: loaded });
        await read();
      } catch (e) {
        await removeAll();
        throw new Error(`shield: ${(e as Error).message}`);
      }
      timer = setInterval(() => void read().catch((e: unknown) => logger.warn('shield: cannot read the counters', { error: (e as Error).message })), POLL_S * 1000);
      timer.unref();
      logger.info('shield applied', { table: SHIELD_TABLE_NAME, mode: spec.mode, services: spec.services.map((s) => s.name), interfaces: spec.interfaces });
      return { shield: spec.mode, shieldServices: spec.services.map((s) => s.name) };
    },
    // the packet layer keeps protecting while other services drain
    stopAccepting: async () => undefined,
    close: removeAll,
  };
}

const Rates = Type.Record(Type.String(), Type.Number(), { description: 'packets per second over the last second' });
const ShieldStatus = Type.Object({
  mode: Type.Union([Type.Literal('host'), Type.Literal('router')]),
  table: Type.String({ description: 'the nftables table the shield owns' }),
  loaded: Type.Boolean({ description: 'the table is in the kernel' }),
  interfaces: Type.Array(Type.String()),
  flags: Type.Record(Type.String(), Type.Integer(), { description: 'packets dropped per TCP flag class since the table was applied' }),
  blocked: Type.Object({ manual: Type.Integer(), meter: Type.Integer(), globalCap: Type.Integer() }, { description: 'packets dropped by the blocklists and the global cap' }),
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
    m.counter({ name: 'edgeward_shield_blocked_total', help: 'Packets dropped from blocklisted sources (list: manual or meter) and by the global cap (list: global_cap).', labels: ['list'], read: () => [[{ list: 'manual' }, packets(COUNTERS.blockedManual)], [{ list: 'meter' }, packets(COUNTERS.blockedMeter)], [{ list: 'global_cap' }, packets(COUNTERS.globalCap)]] });
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
        blocked: { manual: p(COUNTERS.blockedManual), meter: p(COUNTERS.blockedMeter), globalCap: p(COUNTERS.globalCap) },
        services: shield.spec.services.map((s) => {
          const c = serviceCounters(s.name);
          return { name: s.name, protocol: s.protocol, address: s.address ?? null, ports: [...s.ports], passed: p(c.passed), overRate: p(c.overRate), overConns: p(c.overConns), synproxy: p(c.synproxy) };
        }),
        rates: shield.counters().rates,
      };
    });
  },
};

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
