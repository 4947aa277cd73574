// Two uplinks and no MPTCP endpoint anywhere: the lab of edgeward's fullmesh and backup path
// management (issue 12). A gateway namespace (edgeward, with --uplinks naming both of its addresses)
// reaches a server over two shaped links; the gateway routes by source address (a table for uplink
// B), as a multihomed host does, so a subflow from B's address leaves over B. The kernel's path
// manager would make no second subflow here: every one comes from edgeward.
import { setDefaultTransport, type EdgewardInLab } from './edgeward.js';
import { download, type FileServer } from './file-server.js';
import type { Lab, Link, Netns } from './netns.js';
import { HarnessError, sleep } from './process.js';

export interface UplinksLab {
  gw: Netns;
  server: Netns;
  /** uplink A: gw 10.248.31.1, server 10.248.31.2 (the server's service address) */
  linkA: Link;
  /** uplink B: gw 10.248.32.1, server 10.248.32.2 */
  linkB: Link;
  rateMbit: number;
  /** what edgeward start needs: --uplinks with both gateway addresses */
  uplinksArg: string[];
}

export async function buildUplinksLab(lab: Lab, opts: { rateMbit?: number } = {}): Promise<UplinksLab> {
  const rateMbit = opts.rateMbit ?? 50;
  const gw = await lab.addNamespace('gw');
  const server = await lab.addNamespace('server');
  const linkA = await lab.link(gw, server, { addrA: '10.248.31.1/24', addrB: '10.248.31.2/24', rateMbit });
  const linkB = await lab.link(gw, server, { addrA: '10.248.32.1/24', addrB: '10.248.32.2/24', rateMbit });
  await lab.ip(gw, ['rule', 'add', 'from', linkB.a.ip, 'table', '102']);
  await lab.ip(gw, ['route', 'add', linkA.b.ip, 'via', linkB.b.ip, 'dev', linkB.a.ifname, 'table', '102']);
  for (const ns of [gw, server]) {
    await lab.mptcpLimits(ns, { subflows: 8, addAddrAccepted: 8 });
    await lab.sysctl(ns, 'net.ipv4.conf.all.rp_filter', 0);
    await lab.sysctl(ns, 'net.ipv4.conf.default.rp_filter', 0);
  }
  return { gw, server, linkA, linkB, rateMbit, uplinksArg: ['--uplinks', `${linkA.a.ip},${linkB.a.ip}`] };
}

/** Bytes the gateway received on uplink A and on uplink B so far (the download direction). */
export async function uplinkRx(lab: Lab, topo: UplinksLab): Promise<[number, number]> {
  const r = await lab.exec(topo.gw, ['cat', `/sys/class/net/${topo.linkA.a.ifname}/statistics/rx_bytes`, `/sys/class/net/${topo.linkB.a.ifname}/statistics/rx_bytes`]);
  const [a, b] = r.stdout.trim().split(/\s+/).map(Number);
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) throw new HarnessError('exec_failed', `unexpected rx_bytes "${r.stdout.trim()}"`);
  return [a, b];
}

/** Blackholes uplink A at the gateway (nftables drops everything in and out of it: no carrier loss to react to), or ends that. */
export async function blackholeA(lab: Lab, topo: UplinksLab, on: boolean): Promise<void> {
  await lab.blackhole(topo.gw, topo.linkA.a.ifname, on);
}

/** One path (TCP) against fullmesh over both uplinks through edgeward, best of `rounds`. */
export async function compareFullmesh(lab: Lab, topo: UplinksLab, ew: EdgewardInLab, file: FileServer, opts: { rounds?: number; stopWhenRatio?: number; log?: (line: string) => void } = {}): Promise<{ singleMbps: number; fullmeshMbps: number; ratio: number; intact: boolean }> {
  let single = 0;
  let both = 0;
  let intact = true;
  for (let round = 0; round < (opts.rounds ?? 2); round++) {
    await setDefaultTransport(ew, { mptcp: false });
    const one = await download(lab, topo.gw, file.url, { socks5: ew.socks, timeoutMs: 30_000 });
    await setDefaultTransport(ew, { mptcp: true, pathManager: 'fullmesh' });
    const mesh = await download(lab, topo.gw, file.url, { socks5: ew.socks, timeoutMs: 30_000 });
    intact &&= one.sha256 === file.sha256 && mesh.sha256 === file.sha256;
    single = Math.max(single, one.mbps);
    both = Math.max(both, mesh.mbps);
    opts.log?.(`fullmesh round ${round + 1}: one path ${one.mbps.toFixed(1)} Mbit/s, fullmesh ${mesh.mbps.toFixed(1)} Mbit/s (${(mesh.mbps / one.mbps).toFixed(2)}x)`);
    if (opts.stopWhenRatio !== undefined && both >= opts.stopWhenRatio * single) break;
  }
  return { singleMbps: single, fullmeshMbps: both, ratio: both / single, intact };
}

/** What a backup uplink did: its share while A worked, and a failover with A blackholed for a while and back. */
export interface BackupFigures {
  /** B's share of a whole download while A worked (0..1) */
  calmShareB: number;
  /** the longest time without progress on either uplink after A was blackholed */
  stallMs: number;
  /** bytes B carried while A was blackholed */
  outageBytesB: number;
  /** ms after A's return until A carried the download again (4x B's bytes over a second); null: not before the end */
  returnedMs: number | null;
  /** both downloads arrived whole */
  intact: boolean;
}

/**
 * With the default policy at fullmesh and `backup: [B's device]`: one download of `file` while both
 * uplinks work (B's share), then one of `longFile` (at least ~12 s at one uplink's rate: 96 MiB for
 * 50 Mbit/s) during which A is blackholed after 2.5 s for `outageMs` and then returns, the
 * gateway's rx counters sampled every 100 ms. (A rate-limited client would not do: the gateway's
 * socket buffers and pipe run ~20 MB ahead of it, so the network would be done long before it.)
 */
export async function measureBackupFailover(lab: Lab, topo: UplinksLab, ew: EdgewardInLab, file: FileServer, longFile: FileServer, opts: { outageMs?: number } = {}): Promise<BackupFigures> {
  const outageMs = opts.outageMs ?? 4000;
  await setDefaultTransport(ew, { mptcp: true, pathManager: 'fullmesh', backup: [topo.linkB.a.ifname] });
  const before = await uplinkRx(lab, topo);
  const calm = await download(lab, topo.gw, file.url, { socks5: ew.socks, timeoutMs: 30_000 });
  const mid = await uplinkRx(lab, topo);
  const calmA = mid[0] - before[0];
  const calmB = mid[1] - before[1];

  let finished = false;
  const dl = lab.exec(topo.gw, ['curl', '-sS', '-f', '--max-time', '60', '--socks5', ew.socks, '-o', '/dev/null', '-w', '%{size_download}', longFile.url], { timeoutMs: 70_000 }).finally(() => {
    finished = true;
  });
  const samples: Array<{ t: number; a: number; b: number }> = [];
  const sampleFor = async (ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (Date.now() < end && !finished) {
      const [a, b] = await uplinkRx(lab, topo);
      samples.push({ t: Date.now(), a, b });
      await sleep(100);
    }
  };
  await sampleFor(2500);
  const cutAt = Date.now();
  await blackholeA(lab, topo, true);
  let backAt = cutAt;
  try {
    await sampleFor(outageMs);
  } finally {
    backAt = Date.now();
    await blackholeA(lab, topo, false);
  }
  await sampleFor(30_000);
  const got = await dl;

  let stallMs = 0;
  let lastMove = cutAt;
  for (let i = 1; i < samples.length; i++) {
    const s = samples[i]!;
    const p = samples[i - 1]!;
    if (s.t < cutAt) continue;
    if (s.a + s.b - (p.a + p.b) > 16_384) {
      stallMs = Math.max(stallMs, p.t - lastMove);
      lastMove = s.t;
    }
  }
  const during = samples.filter((s) => s.t >= cutAt && s.t <= backAt);
  const outageBytesB = during.length > 1 ? during.at(-1)!.b - during[0]!.b : 0;
  let returnedMs: number | null = null;
  for (let i = 0; i < samples.length && returnedMs === null; i++) {
    const s = samples[i]!;
    if (s.t < backAt) continue;
    const j = samples.findIndex((x) => x.t >= s.t + 1000);
    if (j < 0) break;
    const a = samples[j]!.a - s.a;
    const b = samples[j]!.b - s.b;
    if (a > 1e6 && a > 4 * b) returnedMs = s.t - backAt;
  }
  return { calmShareB: calmB / (calmA + calmB), stallMs, outageBytesB, returnedMs, intact: calm.sha256 === file.sha256 && Number(got.stdout.trim()) === longFile.bytes };
}
