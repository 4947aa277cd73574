// Hybrid access in the lab: an unaware client's downloads through an intercepting edgeward router,
// two 50 Mbit/s uplinks and an edgeward concentrator (the topology of
// test/lab/hybrid-access.test.ts). Measures the MPTCP/TCP ratio (router policy mptcp:true vs
// mptcp:false) and the failover stall: the longest time without a byte arriving when uplink A is
// cut in the middle of an MPTCP download. Always tears the lab down.
import { blackholeUplinkA, buildHybridLab, timedDownload } from '../test/helpers/hybrid-lab.js';
import { setDefaultTransport, startEdgeward } from '../test/helpers/edgeward.js';
import { download, startFileServer } from '../test/helpers/file-server.js';
import { withLab } from '../test/helpers/netns.js';
import { edgewardSkipReason, labSkipReason } from '../test/helpers/requirements.js';

export type HybridOutcome =
  | { status: 'measured'; tcpMbps: number; mptcpMbps: number; ratio: number; stallSeconds: number; failoverMbps: number; blackholeStallSeconds: number }
  | { status: 'skipped'; reason: string }
  | { status: 'error'; reason: string };

export async function measureHybrid(opts: { rounds?: number; log?: (line: string) => void } = {}): Promise<HybridOutcome> {
  const skipped = labSkipReason({ needs: ['curl', 'python3', 'nft'] }) ?? edgewardSkipReason();
  if (skipped) return { status: 'skipped', reason: skipped };
  const log = opts.log ?? (() => {});
  try {
    return await withLab(async (lab) => {
      const topo = await buildHybridLab(lab, { rateMbit: 50 });
      const file = await startFileServer(lab, topo.server, { addr: topo.serverAddr, sizeMiB: 48, mptcp: false }); // ~4 s over both uplinks: startup weighs little
      // downloads are sent by the concentrator over the uplinks: --client-congestion picks the
      // congestion control of that hop, for the TCP and the MPTCP runs alike (reno: bbr, this
      // kernel's default, leaves ~4 % of the two uplinks unused under MPTCP; see bench/README.md)
      await startEdgeward(lab, topo.concentrator, { socks: '0.0.0.0:1080', args: ['--socks-mptcp', '--socks-allow', '10.251.0.0/16', '--client-congestion', 'reno'] });
      const router = await startEdgeward(lab, topo.router, {
        args: ['--intercept', '15001', '--firewall', '--intercept-interface', topo.lanIf, '--upstream', `socks5://${topo.concentratorAddr}:1080`],
      });
      const best = { tcp: 0, mptcp: 0 };
      for (let round = 1; round <= (opts.rounds ?? 2); round++) {
        for (const mptcp of [false, true]) {
          await setDefaultTransport(router, { mptcp });
          const d = await download(lab, topo.client, file.url);
          if (d.sha256 !== file.sha256) throw new Error('hybrid: a download arrived corrupt');
          log(`hybrid: round ${round}, router policy mptcp:${mptcp} ${d.mbps.toFixed(1)} Mbit/s`);
          if (mptcp) best.mptcp = Math.max(best.mptcp, d.mbps);
          else best.tcp = Math.max(best.tcp, d.mbps);
        }
      }
      await setDefaultTransport(router, { mptcp: true });
      const dl = timedDownload(lab, topo.client, file.url, 60_000);
      await new Promise((r) => setTimeout(r, 700));
      await lab.setLinkUp(topo.router, topo.upA.a.ifname, false);
      const f = await dl;
      if (f.sha256 !== file.sha256) throw new Error('hybrid: the failover download arrived corrupt');
      log(`hybrid: uplink A cut 0.7 s into an MPTCP download: completed at ${f.mbps.toFixed(1)} Mbit/s, longest stall ${f.maxStallSeconds.toFixed(2)} s`);
      await lab.setLinkUp(topo.router, topo.upA.a.ifname, true);
      await new Promise((r) => setTimeout(r, 1000));
      // the harder case: uplink A stays up but carries nothing (no carrier loss to react to)
      const bh = timedDownload(lab, topo.client, file.url, 60_000);
      await new Promise((r) => setTimeout(r, 700));
      await blackholeUplinkA(lab, topo, true);
      const b = await bh;
      await blackholeUplinkA(lab, topo, false);
      if (b.sha256 !== file.sha256) throw new Error('hybrid: the download over a blackholed uplink arrived corrupt');
      log(`hybrid: uplink A blackholed 0.7 s into an MPTCP download: completed at ${b.mbps.toFixed(1)} Mbit/s, longest stall ${b.maxStallSeconds.toFixed(2)} s`);
      await router.stop();
      return {
        status: 'measured',
        tcpMbps: best.tcp,
        mptcpMbps: best.mptcp,
        ratio: best.mptcp / best.tcp,
        stallSeconds: f.maxStallSeconds,
        failoverMbps: f.mbps,
        blackholeStallSeconds: b.maxStallSeconds,
      };
    });
  } catch (e) {
    return { status: 'error', reason: e instanceof Error ? e.message : String(e) };
  }
}
