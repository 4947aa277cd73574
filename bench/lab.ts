// The lab's MPTCP/TCP ratio, measured by bench/lab-mptcp.ts (the network-namespace lab, written
// separately). Loaded only when that file exists, so the bench runs before the lab lands.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './procs.js';

export type LabOutcome =
  | { status: 'measured'; tcpMbps: number; mptcpMbps: number; ratio: number }
  | { status: 'skipped'; reason: string }
  | { status: 'not available'; reason: string }
  | { status: 'error'; reason: string };

const LAB_MODULE = './lab-mptcp.js';

/** Runs measureLabRatio() from bench/lab-mptcp.ts; never throws. */
export async function runLab(timeoutMs: number, log: (line: string) => void): Promise<LabOutcome> {
  const source = fileURLToPath(new URL('./lab-mptcp.ts', import.meta.url));
  if (!existsSync(source) && !existsSync(source.replace(/\.ts$/, '.js'))) {
    return { status: 'not available', reason: 'bench/lab-mptcp.ts does not exist yet' };
  }
  try {
    // a computed specifier: the type checker must not require the file to exist
    const spec: string = LAB_MODULE;
    const mod = (await import(spec)) as { measureLabRatio?: unknown };
    if (typeof mod.measureLabRatio !== 'function') {
      return { status: 'error', reason: 'bench/lab-mptcp.ts exports no measureLabRatio()' };
    }
    const measure = mod.measureLabRatio as (opts: { log: (line: string) => void }) => Promise<unknown>;
    const result = await withTimeout(measure({ log }), timeoutMs);
    if (result === undefined) return { status: 'error', reason: `measureLabRatio() did not finish within ${timeoutMs / 1000} s` };
    return interpret(result);
  } catch (e) {
    return { status: 'error', reason: e instanceof Error ? e.message : String(e) };
  }
}

function interpret(r: unknown): LabOutcome {
  if (typeof r === 'object' && r !== null) {
    const o = r as Record<string, unknown>;
    if (typeof o.skipped === 'string') return { status: 'skipped', reason: o.skipped };
    if (typeof o.tcpMbps === 'number' && typeof o.mptcpMbps === 'number' && typeof o.ratio === 'number') {
      return { status: 'measured', tcpMbps: o.tcpMbps, mptcpMbps: o.mptcpMbps, ratio: o.ratio };
    }
  }
  return { status: 'error', reason: `unexpected result from measureLabRatio(): ${JSON.stringify(r)?.slice(0, 200)}` };
}
