// edgeward's own MPTCP path manager in the lab (issue 12), next to the MPTCP and hybrid lab rows:
// ndiffports with 8 subflows against one subflow on two ECMP links (test/helpers/ecmp-lab.ts), and
// a backup uplink under fullmesh on two uplinks with no kernel endpoint (test/helpers/uplinks-lab.ts):
// its share while the other works, the stall when the other is blackholed, the time until traffic
// returns. The same measurements as test/lab/mptcp-ecmp.test.ts and mptcp-fullmesh-backup.test.ts.
// Never throws; always tears its labs down.
import { buildEcmpLab, compareNdiffports } from '../test/helpers/ecmp-lab.js';
import { startEdgeward } from '../test/helpers/edgeward.js';
import { startFileServer } from '../test/helpers/file-server.js';
import { withLab } from '../test/helpers/netns.js';
import { edgewardSkipReason, labSkipReason } from '../test/helpers/requirements.js';
import { buildUplinksLab, compareFullmesh, measureBackupFailover, type BackupFigures } from '../test/helpers/uplinks-lab.js';

export type PathsOutcome =
  | {
      status: 'measured';
      ecmp: { singleMbps: number; ndiffportsMbps: number; ratio: number; subflows: number; perLink: [number, number] };
      fullmesh: { singleMbps: number; fullmeshMbps: number; ratio: number };
      backup: BackupFigures;
    }
  | { status: 'skipped'; reason: string }
  | { status: 'error'; reason: string };

export async function measurePaths(opts: { log?: (line: string) => void } = {}): Promise<PathsOutcome> {
  const skipped = labSkipReason({ needs: ['curl', 'mptcpize', 'python3', 'nft'] }) ?? edgewardSkipReason();
  if (skipped) return { status: 'skipped', reason: skipped };
  const log = opts.log ?? (() => {});
  try {
    const ecmp = await withLab(async (lab) => {
      const topo = await buildEcmpLab(lab, { rateMbit: 50 });
      const file = await startFileServer(lab, topo.server, { addr: topo.serviceAddr, sizeMiB: 48 });
      const ew = await startEdgeward(lab, topo.gw, { args: ['--bind-outgoing', topo.sourceAddr] });
      const f = await compareNdiffports(lab, topo, ew, file, { subflows: 8, rounds: 2 });
      for (const r of f.runs) log(`paths: ECMP, ${r.mode} ${r.mbps.toFixed(1)} Mbit/s${r.intact ? '' : ' CORRUPT'}`);
      if (!f.runs.every((r) => r.intact)) throw new Error('paths: an ECMP download arrived corrupt');
      await ew.stop();
      return { singleMbps: f.singleMbps, ndiffportsMbps: f.ndiffportsMbps, ratio: f.ratio, subflows: f.subflowsSeen, perLink: f.perLink };
    });
    const { fullmesh, backup } = await withLab(async (lab) => {
      const topo = await buildUplinksLab(lab, { rateMbit: 50 });
      const file = await startFileServer(lab, topo.server, { addr: topo.linkA.b.ip, sizeMiB: 48 });
      const longFile = await startFileServer(lab, topo.server, { addr: topo.linkA.b.ip, port: 8001, sizeMiB: 96 });
      const ew = await startEdgeward(lab, topo.gw, { args: topo.uplinksArg });
      const mesh = await compareFullmesh(lab, topo, ew, file, { rounds: 2, log });
      if (!mesh.intact) throw new Error('paths: a fullmesh download arrived corrupt');
      const b = await measureBackupFailover(lab, topo, ew, file, longFile, { outageMs: 4000 });
      log(`paths: backup, ${(b.calmShareB * 100).toFixed(2)} % on B while A worked; A blackholed: stall ${b.stallMs} ms; back on A ${b.returnedMs ?? 'never'} ms after it returned`);
      if (!b.intact) throw new Error('paths: a backup download arrived corrupt');
      await ew.stop();
      return { fullmesh: { singleMbps: mesh.singleMbps, fullmeshMbps: mesh.fullmeshMbps, ratio: mesh.ratio }, backup: b };
    });
    return { status: 'measured', ecmp, fullmesh, backup };
  } catch (e) {
    return { status: 'error', reason: e instanceof Error ? e.message : String(e) };
  }
}
