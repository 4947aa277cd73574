// Attack detection: the counters' rates (packets per second the packet layer dropped, metered or
// answered, per counter) are summed into one signal per kind of attack; a kind whose signal reaches
// its threshold starts an attack event, which records its peak, its packets, the peak of each layer
// and its top sources, and ends once the signal has stayed under the threshold for the quiet time.
// No I/O here: the service feeds readings in and acts on the transitions that come out.
import type { ShieldSpec } from './config.js';
import { COUNTERS, FLAG_CLASSES, serviceCounters } from './rules.js';

export const ATTACK_KINDS = ['syn_flood', 'udp_flood', 'tcp_flags'] as const;
export type AttackKind = (typeof ATTACK_KINDS)[number];

/** The protocol whose sources an attack kind samples. */
export const KIND_PROTOCOL: Record<AttackKind, 'tcp' | 'udp'> = { syn_flood: 'tcp', udp_flood: 'udp', tcp_flags: 'tcp' };

/** One kind's signal in one reading: the sum, and what it is made of (packets per second per layer). */
export interface Signal {
  pps: number;
  layers: Record<string, number>;
}

export interface SourceCount {
  address: string;
  packets: number;
}

/** An attack as the store keeps it and the API shows it. */
export interface AttackEvent {
  /** the store's id (0 until stored) */
  id: number;
  kind: AttackKind;
  startedAt: string;
  /** null while it goes on */
  endedAt: string | null;
  /** the highest signal of one reading, packets per second */
  peakPps: number;
  /** attack packets over the event (rates times the time between readings) */
  packets: number;
  /** the highest rate of each layer (counter) that made up the signal */
  layers: Record<string, number>;
  /** the sources that sent the most packets while it went on (sampled by the packet layer) */
  topSources: SourceCount[];
  /** distinct sources in the sample at its fullest (the sample holds at most SAMPLE_SIZE) */
  distinctSources: number;
  /** the services whose limits were tightened for it */
  tightened: string[];
}

export type Transition = { type: 'started' | 'updated' | 'ended'; event: AttackEvent };

const TOP_SOURCES = 10;

/** The signals of a reading: for each kind, the rates of the counters that attack fills. */
export function signals(spec: ShieldSpec, rates: Record<string, number>): Record<AttackKind, Signal> {
  const r = (name: string): number => rates[name] ?? 0;
  const sum = (names: string[]): Signal => {
    const layers: Record<string, number> = {};
    let pps = 0;
    for (const n of names) {
      const v = r(n);
      if (v > 0) layers[n] = (layers[n] ?? 0) + v;
      pps += v;
    }
    return { pps, layers };
  };
  const syn: string[] = [COUNTERS.blockedMeterTcp, COUNTERS.globalCapTcp];
  const udp: string[] = [COUNTERS.blockedMeterOther, COUNTERS.globalCapUdp];
  for (const s of spec.services) {
    const c = serviceCounters(s.name);
    if (s.protocol === 'udp') {
      udp.push(c.passed, c.overRate);
      continue;
    }
    // synproxy answers every SYN; with cookies every SYN is a new conntrack entry the rules pass
    syn.push(s.syn === 'synproxy' ? c.synproxy : c.passed, c.overRate, c.overConns);
  }
  return { syn_flood: sum(syn), udp_flood: sum(udp), tcp_flags: sum(FLAG_CLASSES.map((k) => k.counter)) };
}

export interface DetectorOptions {
  /** packets per second at which each kind starts an attack */
  threshold: Record<AttackKind, number>;
  /** how long the signal stays under the threshold before the attack ends */
  quietMs: number;
}

interface Active {
  event: AttackEvent;
  quietSince: number | null;
}

export class AttackDetector {
  private readonly active = new Map<AttackKind, Active>();
  /** the sampled sources of each event, kept as long as the event object is */
  private readonly sources = new WeakMap<AttackEvent, Map<string, number>>();

  constructor(private readonly opts: DetectorOptions) {}

  /** The attacks going on now. */
  current(): AttackEvent[] {
    return [...this.active.values()].map((a) => a.event);
  }

  /** Feeds one reading (`dtS` seconds after the one before); returns what started, went on, or ended. */
  observe(now: number, dtS: number, sig: Record<AttackKind, Signal>): Transition[] {
    const out: Transition[] = [];
    for (const kind of ATTACK_KINDS) {
      const s = sig[kind];
      const over = s.pps >= this.opts.threshold[kind];
      let a = this.active.get(kind);
      if (!a) {
        if (!over) continue;
        a = {
          event: { id: 0, kind, startedAt: new Date(now).toISOString(), endedAt: null, peakPps: 0, packets: 0, layers: {}, topSources: [], distinctSources: 0, tightened: [] },
          quietSince: null,
        };
        this.active.set(kind, a);
        this.account(a, s, dtS);
        out.push({ type: 'started', event: a.event });
        continue;
      }
      this.account(a, s, dtS);
      if (over) a.quietSince = null;
      else a.quietSince ??= now;
      if (a.quietSince !== null && now - a.quietSince >= this.opts.quietMs) {
        a.event.endedAt = new Date(a.quietSince).toISOString();
        this.active.delete(kind);
        out.push({ type: 'ended', event: a.event });
      } else {
        out.push({ type: 'updated', event: a.event });
      }
    }
    return out;
  }

  private account(a: Active, s: Signal, dtS: number): void {
    const e = a.event;
    e.peakPps = Math.max(e.peakPps, Math.round(s.pps));
    e.packets += Math.round(s.pps * dtS);
    for (const [layer, pps] of Object.entries(s.layers)) e.layers[layer] = Math.max(e.layers[layer] ?? 0, Math.round(pps));
  }

  /** Adds a sample of sources (packets per address since each entered the sample) to the attacks on `protocol` (those going on, or `events`). */
  addSources(protocol: 'tcp' | 'udp', sample: readonly SourceCount[], events: readonly AttackEvent[] = this.current()): void {
    for (const e of events) {
      if (KIND_PROTOCOL[e.kind] !== protocol) continue;
      let seen = this.sources.get(e);
      if (!seen) this.sources.set(e, (seen = new Map()));
      for (const s of sample) seen.set(s.address, Math.max(seen.get(s.address) ?? 0, s.packets));
      const ranked = [...seen].sort((x, y) => y[1] - x[1]);
      // keep the bookkeeping bounded: the top sources and a tail to compare against
      if (seen.size > TOP_SOURCES * 50) this.sources.set(e, new Map(ranked.slice(0, TOP_SOURCES * 10)));
      e.topSources = ranked.slice(0, TOP_SOURCES).map(([address, packets]) => ({ address, packets }));
      e.distinctSources = Math.max(e.distinctSources, sample.length);
    }
  }

  /** Ends every attack now (the shield stops). */
  endAll(now: number): Transition[] {
    const out: Transition[] = [];
    for (const [kind, a] of this.active) {
      a.event.endedAt = new Date(now).toISOString();
      out.push({ type: 'ended', event: a.event });
      this.active.delete(kind);
    }
    return out;
  }
}
