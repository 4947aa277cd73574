// The lab half of the benchmark: one download through edgeward's SOCKS5 listener over two shaped
// paths, with the default policy at mptcp:false and at mptcp:true. Builds the same topology as
// test/lab/socks-mptcp.test.ts and always tears it down.
import { startEdgeward } from '../test/helpers/edgeward.js';
import { startFileServer } from '../test/helpers/file-server.js';
import { withLab } from '../test/helpers/netns.js';
import { edgewardSkipReason, labSkipReason } from '../test/helpers/requirements.js';
import { buildTwoPathLab, compareThroughEdgeward } from '../test/helpers/two-path-lab.js';

export interface LabRatioOptions {
  /** rate of each of the two paths; default 50 Mbit/s */
  rateMbit?: number;
  /** size of the downloaded file; default 48 MiB (about 4 s over both paths: the join of the second subflow and slow start weigh little) */
  sizeMiB?: number;
  /** downloads per setting, best kept (the machine is shared, figures are noisy); default 2 */
  rounds?: number;
  /** program to run as edgeward instead of this checkout's bin/edgeward.js */
  command?: string[];
  /** progress lines (each download's figure) */
  log?: (line: string) => void;
}

export type LabRatio = { tcpMbps: number; mptcpMbps: number; ratio: number } | { skipped: string };

/** Measures plain-TCP vs MPTCP download speed through edgeward in a two-path network namespace lab. */
export async function measureLabRatio(opts: LabRatioOptions = {}): Promise<LabRatio> {
  const skipped = labSkipReason({ needs: ['curl', 'mptcpize', 'python3'] }) ?? edgewardSkipReason();
  if (skipped) return { skipped };
  const log = opts.log ?? (() => {});
  return withLab(async (lab) => {
    const topo = await buildTwoPathLab(lab, { rateMbit: opts.rateMbit ?? 50 });
    const file = await startFileServer(lab, topo.server, { addr: topo.serverAddr, sizeMiB: opts.sizeMiB ?? 48 });
    const ew = await startEdgeward(lab, topo.proxy, opts.command ? { command: opts.command } : {});
    try {
      const f = await compareThroughEdgeward(topo, ew, file, { rounds: opts.rounds ?? 2 });
      for (const r of f.runs) log(`lab: through edgeward, mptcp:${r.mptcp} ${r.mbps.toFixed(1)} Mbit/s (${r.seconds.toFixed(2)} s)`);
      const bad = f.runs.filter((r) => !r.checksumOk).length;
      if (bad > 0) throw new Error(`lab: ${bad} download(s) through edgeward arrived corrupt`);
      return { tcpMbps: f.tcpMbps, mptcpMbps: f.mptcpMbps, ratio: f.ratio };
    } finally {
      await ew.stop();
    }
  });
}
