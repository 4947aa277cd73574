// The two-path lab: a proxy and a server namespace joined by two shaped paths with MPTCP set up, and
// the plain-vs-MPTCP download comparison through edgeward's SOCKS5 listener that the MPTCP lab test
// and the benchmark both run on it.
import { setDefaultTransport, type EdgewardInLab } from './edgeward.js';
import { download, type FileServer } from './file-server.js';
import type { Lab, Link, Netns } from './netns.js';
import { sleep } from './process.js';

export interface TwoPathLab {
  lab: Lab;
  proxy: Netns;
  server: Netns;
  /** proxy <-> server over 10.248.1.0/24 */
  pathA: Link;
  /** proxy <-> server over 10.248.2.0/24 */
  pathB: Link;
  /** the server's path-A address: what clients connect to */
  serverAddr: string;
  /** the subnet of serverAddr, for a cidr policy */
  serverSubnet: string;
  rateMbit: number;
}

/**
 * Two namespaces, proxy and server, joined by two independent paths (A and B) of `rateMbit` each,
 * with MPTCP set up so that a connection to the server's path-A address gets a second subflow over
 * path B: the server announces its path-B address (signal endpoint); both accept 2 subflows.
 */
export async function buildTwoPathLab(lab: Lab, opts: { rateMbit?: number } = {}): Promise<TwoPathLab> {
  const rateMbit = opts.rateMbit ?? 50;
  const proxy = await lab.addNamespace('proxy');
  const server = await lab.addNamespace('server');
  const pathA = await lab.link(proxy, server, { addrA: '10.248.1.1/24', addrB: '10.248.1.2/24', rateMbit });
  const pathB = await lab.link(proxy, server, { addrA: '10.248.2.1/24', addrB: '10.248.2.2/24', rateMbit });
  for (const ns of [proxy, server]) await lab.mptcpLimits(ns, { subflows: 2, addAddrAccepted: 2 });
  await lab.mptcpEndpoint(server, pathB.b.ip, pathB.b.ifname, ['signal']);
  return { lab, proxy, server, pathA, pathB, serverAddr: pathA.b.ip, serverSubnet: '10.248.1.0/24', rateMbit };
}


/** The figures of one plain-vs-MPTCP comparison through edgeward. */
export interface SocksMptcpFigures {
  tcpMbps: number;
  mptcpMbps: number;
  ratio: number;
  /** every single download, in order, for the log */
  runs: Array<{ mptcp: boolean; mbps: number; seconds: number; checksumOk: boolean }>;
}

/**
 * Downloads `file` through edgeward's SOCKS5 listener `rounds` times with the default policy at
 * mptcp:false and at mptcp:true (alternating), keeping the best of each (throughput on a shared
 * machine is noisy); with stopWhenRatio, stops after the first round that reaches it.
 * `onMptcpDownload` runs while the first MPTCP download is in flight (e.g. to read /api/v1/connections).
 */
export async function compareThroughEdgeward(
  topo: TwoPathLab,
  ew: EdgewardInLab,
  file: FileServer,
  opts: { rounds?: number; stopWhenRatio?: number; onMptcpDownload?: () => Promise<void> } = {},
): Promise<SocksMptcpFigures> {
  const runs: SocksMptcpFigures['runs'] = [];
  const best = { tcp: 0, mptcp: 0 };
  for (let round = 0; round < Math.min(Math.max(opts.rounds ?? 1, 1), 5); round++) {
    for (const mptcp of [false, true]) {
      await setDefaultTransport(ew, { mptcp });
      const dl = download(topo.lab, topo.proxy, file.url, { socks5: ew.socks });
      const probe = mptcp && round === 0 && opts.onMptcpDownload ? sleep(1000).then(opts.onMptcpDownload) : Promise.resolve();
      const [d] = await Promise.all([dl, probe]);
      runs.push({ mptcp, mbps: d.mbps, seconds: d.seconds, checksumOk: d.sha256 === file.sha256 && d.bytes === file.bytes });
      if (mptcp) best.mptcp = Math.max(best.mptcp, d.mbps);
      else best.tcp = Math.max(best.tcp, d.mbps);
    }
    if (opts.stopWhenRatio !== undefined && best.tcp > 0 && best.mptcp / best.tcp >= opts.stopWhenRatio) break;
  }
  return { tcpMbps: best.tcp, mptcpMbps: best.mptcp, ratio: best.tcp > 0 ? best.mptcp / best.tcp : 0, runs };
}
