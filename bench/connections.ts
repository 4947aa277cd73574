// Connections per second: our cps.c load generator against our echo-server.c, directly or through
// a SOCKS5 proxy (greeting, CONNECT by IPv4, 64-byte echo, close per transaction).
import { timeWaitCount } from './net-util.js';
import { run } from './procs.js';
import type { Target } from './targets.js';

export interface CpsSample {
  perSecond: number;
  transactions: number;
  seconds: number;
  errorsTotal: number;
  /** only the kinds that occurred */
  errors: Record<string, number>;
  socksReplyCodes: Record<string, number>;
  latencyUs: { p50: number; p90: number; p99: number; max: number };
  /** host-wide TIME_WAIT sockets before and after (port exhaustion shows up here first) */
  timeWait: { before?: number; after?: number };
}

interface CpsJson {
  per_second: number;
  transactions: number;
  seconds: number;
  errors_total: number;
  errors: Record<string, number>;
  socks_reply_codes: Record<string, number>;
  latency_us: { p50: number; p90: number; p99: number; max: number };
}

export interface CpsOptions {
  concurrency: number;
  payload: number;
  timeoutMs: number;
  /** client source addresses 127.0.0.1..K and echo addresses 127.0.0.1..K (see cps.c) */
  spread: number;
}

export async function measureCps(bin: string, echoPort: number, target: Target, seconds: number, o: CpsOptions): Promise<CpsSample> {
  const args = [
    '--target', `127.0.0.1:${echoPort}`,
    '--concurrency', String(o.concurrency),
    '--seconds', String(seconds),
    '--payload', String(o.payload),
    '--timeout-ms', String(o.timeoutMs),
    '--sources', String(o.spread),
    '--target-addrs', String(o.spread),
  ];
  if (target.socksPort !== undefined) args.push('--socks', `127.0.0.1:${target.socksPort}`);
  const before = timeWaitCount();
  const r = await run(`cps (${target.name})`, bin, args, (seconds + o.timeoutMs / 1000 + 10) * 1000);
  const after = timeWaitCount();
  if (r.timedOut || r.code !== 0) throw new Error(`cps failed (${target.name}): ${r.stderr.trim() || (r.timedOut ? 'timed out' : `exit ${r.code}`)}`);
  const j = JSON.parse(r.stdout) as CpsJson;
  const errors = Object.fromEntries(Object.entries(j.errors).filter(([, n]) => n > 0));
  const timeWait: CpsSample['timeWait'] = {};
  if (before !== undefined) timeWait.before = before;
  if (after !== undefined) timeWait.after = after;
  return {
    perSecond: j.per_second,
    transactions: j.transactions,
    seconds: j.seconds,
    errorsTotal: j.errors_total,
    errors,
    socksReplyCodes: j.socks_reply_codes,
    latencyUs: j.latency_us,
    timeWait,
  };
}
