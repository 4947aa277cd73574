// One metrics registry per thread (prom-client), that every part of the gateway registers its
// families into. A family reads its values at scrape time from the counters its owner keeps as
// plain numbers (the hot path pays no label hashing). Worker threads answer with their registry as
// JSON; the main thread merges them with prom-client's aggregator (sums; `aggregate: 'first'` for
// values that are the same in every thread, such as the number of policies).
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

/** One thread's metrics, as a worker sends them to the main thread. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export interface FamilyOptions<L extends string> {
  name: string;
  /** what it counts, in a sentence */
  help: string;
  labels?: readonly L[];
  /** how the values of several threads combine: sum (default), or the first thread's (same in all) */
  aggregate?: 'sum' | 'first' | 'max';
  /** the current values, read at scrape time: [labels, value] pairs */
  read: () => Array<[Partial<Record<L, string>>, number]> | number;
}

export class Metrics {
  readonly registry = new Registry();

  /** A counter whose value is read from its owner at scrape time (monotonic by the owner's promise). */
  counter<L extends string>(o: FamilyOptions<L>): void {
    this.family('counter', o);
  }

  /** A gauge whose value is read from its owner at scrape time. */
  gauge<L extends string>(o: FamilyOptions<L>): void {
    this.family('gauge', o);
  }

  private family<L extends string>(type: 'counter' | 'gauge', o: FamilyOptions<L>): void {
    const read = o.read;
    const config = {
      name: o.name,
      help: o.help,
      labelNames: (o.labels ?? []) as L[],
      registers: [this.registry],
      aggregator: o.aggregate ?? 'sum',
    };
    if (type === 'counter') {
      new Counter<L>({
        ...config,
        collect(this: Counter<L>) {
          this.reset();
          const v = read();
          if (typeof v === 'number') this.inc(v);
          else for (const [labels, n] of v) this.inc(labels as Record<L, string>, n);
        },
      });
    } else {
      new Gauge<L>({
        ...config,
        collect(this: Gauge<L>) {
          this.reset();
          const v = read();
          if (typeof v === 'number') this.set(v);
          else for (const [labels, n] of v) this.set(labels as Record<L, string>, n);
        },
      });
    }
  }

  /** This thread's values, to send to the main thread. */
  json(): Promise<MetricsJson> {
    return this.registry.getMetricsAsJSON() as Promise<MetricsJson>;
  }
}

/** Merges the metrics of every thread (this one first) into one registry. */
export function mergeMetrics(threads: MetricsJson[]): Registry {
  return AggregatorRegistry.aggregate(threads);
}

/** The value of one series of a family in merged JSON (0 when absent). */
export function valueOf(json: MetricsJson, name: string, labels: Record<string, string> = {}): number {
  const family = json.find((m) => m.name === name);
  if (!family) return 0;
  const want = Object.entries(labels);
  const v = family.values.find((x) => want.every(([k, val]) => x.labels[k] === val) && Object.keys(x.labels).length === want.length);
  return v?.value ?? 0;
}

/** Every series of a family in merged JSON, by the value of one label. */
export function valuesBy(json: MetricsJson, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of json.find((m) => m.name === name)?.values ?? []) {
    const key = v.labels[label];
    if (key !== undefined) out[String(key)] = v.value;
  }
  return out;
}
