// The lab's MPTCP/TCP ratio, measured by bench/lab-mptcp.ts (the network-namespace lab), as one
// row of the benchmark: measured, skipped (with the lab's reason), or an error; never a throw.
import { measureLabRatio } from './lab-mptcp.js';
import { withTimeout } from './procs.js';

export type LabOutcome =
  | { status: 'measured'; tcpMbps: number; mptcpMbps: number; ratio: number }
  | { status: 'skipped'; reason: string }
  | { status: 'not available'; reason: string }
  | { status: 'error'; reason: string };

/** Runs measureLabRatio() from bench/lab-mptcp.ts; never throws. */
export async function runLab(timeoutMs: number, log: (line: string) => void): Promise<LabOutcome> {
  try {
    const result = await withTimeout(measureLabRatio({ log }), timeoutMs);
    if (result === undefined) return { status: 'error', reason: `measureLabRatio() did not finish within ${timeoutMs / 1000} s` };
    if ('skipped' in result) return { status: 'skipped', reason: result.skipped };
    return { status: 'measured', tcpMbps: result.tcpMbps, mptcpMbps: result.mptcpMbps, ratio: result.ratio };
  } catch (e) {
    return { status: 'error', reason: e instanceof Error ? e.message : String(e) };
  }
}
