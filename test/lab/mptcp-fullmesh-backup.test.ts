// pathManager fullmesh and backup through edgeward's own path manager (issue 12), on two uplinks with
// no MPTCP endpoint configured anywhere: the kernel's path manager would add nothing. A gateway
// namespace (edgeward, with --uplinks naming its two addresses) reaches a server over two 50 Mbit/s
// links; the gateway routes by source address (a table per uplink), as a multihomed host does.
// - fullmesh over both uplinks downloads at least 1.8x as fast as one path;
// - with uplink B marked backup, B carries under 5 % of a download while A works; when A is
//   blackholed the download goes on over B (stall under 2 s) and completes intact; when A returns,
//   the traffic goes back to A.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { download, startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab, type Link, type Netns } from '../helpers/netns.js';
import { sleep } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const RATE_MBIT = 50;
const MIN_FULLMESH_RATIO = 1.8;
const skip = requirement(labSkipReason({ needs: ['curl', 'mptcpize', 'python3', 'nft'] }) ?? edgewardSkipReason());
if (skip) console.log(`MPTCP fullmesh/backup lab test skipped: ${skip}`);

describe("fullmesh and backup uplinks through edgeward's path manager, no MPTCP endpoint configured", { skip }, () => {
  const lab = new Lab();
  let gw: Netns;
  let server: Netns;
  let linkA: Link;
  let linkB: Link;
  let file: FileServer;
  let ew: EdgewardInLab;

  before(async () => {
    gw = await lab.addNamespace('gw');
    server = await lab.addNamespace('server');
    linkA = await lab.link(gw, server, { addrA: '10.248.31.1/24', addrB: '10.248.31.2/24', rateMbit: RATE_MBIT });
    linkB = await lab.link(gw, server, { addrA: '10.248.32.1/24', addrB: '10.248.32.2/24', rateMbit: RATE_MBIT });
    // the server's service address is on link A; from uplink B it is reached over link B (source routing)
    await lab.ip(gw, ['rule', 'add', 'from', linkB.a.ip, 'table', '102']);
    await lab.ip(gw, ['route', 'add', linkA.b.ip, 'via', linkB.b.ip, 'dev', linkB.a.ifname, 'table', '102']);
    for (const ns of [gw, server]) {
      await lab.mptcpLimits(ns, { subflows: 8, addAddrAccepted: 8 });
      await lab.sysctl(ns, 'net.ipv4.conf.all.rp_filter', 0);
      await lab.sysctl(ns, 'net.ipv4.conf.default.rp_filter', 0);
    }
    file = await startFileServer(lab, server, { addr: linkA.b.ip, sizeMiB: 48 });
    ew = await startEdgeward(lab, gw, { args: ['--uplinks', `${linkA.a.ip},${linkB.a.ip}`] });
    const endpoints = await lab.ip(gw, ['mptcp', 'endpoint', 'show']);
    assert.equal(endpoints.stdout.trim(), '', 'no kernel endpoint on the gateway');
  }, { timeout: 40_000 });

  after(async () => {
    try {
      if (ew?.process.running) await ew.stop();
    } finally {
      await lab.destroy();
    }
  });

  /** Bytes the gateway received on link A and on link B so far. */
  async function rxBytes(): Promise<[number, number]> {
    const read = async (ifname: string): Promise<number> => Number((await lab.exec(gw, ['cat', `/sys/class/net/${ifname}/statistics/rx_bytes`])).stdout.trim());
    return [await read(linkA.a.ifname), await read(linkB.a.ifname)];
  }

  async function setDefault(transport: Record<string, unknown>): Promise<void> {
    const r = await ew.api('PUT', '/api/v1/policies/default', transport);
    assert.ok(r.status >= 200 && r.status < 300, r.text);
  }

  test(`fullmesh over both uplinks is at least ${MIN_FULLMESH_RATIO}x one path`, { timeout: 90_000 }, async () => {
    let single = 0;
    let both = 0;
    for (let round = 0; round < 3 && !(single > 0 && both >= MIN_FULLMESH_RATIO * single); round++) {
      await setDefault({ mptcp: false });
      const one = await download(lab, gw, file.url, { socks5: ew.socks, timeoutMs: 30_000 });
      assert.equal(one.sha256, file.sha256);
      await setDefault({ mptcp: true, pathManager: 'fullmesh' });
      const mesh = await download(lab, gw, file.url, { socks5: ew.socks, timeoutMs: 30_000 });
      assert.equal(mesh.sha256, file.sha256, 'the fullmesh download is intact');
      single = Math.max(single, one.mbps);
      both = Math.max(both, mesh.mbps);
      console.log(`fullmesh round ${round + 1}: one path ${one.mbps.toFixed(1)} Mbit/s, fullmesh ${mesh.mbps.toFixed(1)} Mbit/s (${(mesh.mbps / one.mbps).toFixed(2)}x)`);
    }
    assert.ok(both >= MIN_FULLMESH_RATIO * single, `fullmesh ${both.toFixed(1)} Mbit/s is not ${MIN_FULLMESH_RATIO}x one path's ${single.toFixed(1)}`);
  });

  test('backup uplink B: under 5 % while A works, the rest when A is blackholed (stall < 2 s), back to A when it returns', { timeout: 90_000 }, async () => {
    await setDefault({ mptcp: true, pathManager: 'fullmesh', backup: [linkB.a.ifname] });
    // while A works
    const before = await rxBytes();
    const calm = await download(lab, gw, file.url, { socks5: ew.socks, timeoutMs: 30_000 });
    const mid = await rxBytes();
    assert.equal(calm.sha256, file.sha256);
    const calmA = mid[0] - before[0];
    const calmB = mid[1] - before[1];
    const calmShare = calmB / (calmA + calmB);
    console.log(`backup, A working: A ${(calmA / 1e6).toFixed(1)} MB, B ${(calmB / 1e6).toFixed(2)} MB (${(calmShare * 100).toFixed(2)} % on B)`);
    assert.ok(calmShare < 0.05, `B carried ${(calmShare * 100).toFixed(1)} % of the download while A worked`);

    // A blackholed in the middle of a download, then back
    const rate = '2M'; // bytes/s: the download lasts ~24 s (the gateway's buffers run a few MB ahead); A's outage and return fall inside it
    let finished = false;
    const dl = lab.exec(gw, ['curl', '-sS', '-f', '--limit-rate', rate, '--max-time', '60', '--socks5', ew.socks, '-o', '/dev/null', '-w', '%{size_download}', file.url], { timeoutMs: 70_000 }).finally(() => {
      finished = true;
    });
    const samples: Array<{ t: number; a: number; b: number }> = [];
    const sampleFor = async (ms: number): Promise<void> => {
      const end = Date.now() + ms;
      while (Date.now() < end && !finished) {
        const [a, b] = await rxBytes();
        samples.push({ t: Date.now(), a, b });
        await sleep(100);
      }
    };
    await sampleFor(2500);
    const cutAt = Date.now();
    await lab.exec(gw, ['nft', '-f', '-'], {
      input: `table inet blackhole {\n chain in { type filter hook input priority -10; iifname "${linkA.a.ifname}" drop; }\n chain out { type filter hook output priority -10; oifname "${linkA.a.ifname}" drop; }\n}\n`,
    });
    await sampleFor(4000);
    const backAt = Date.now();
    await lab.exec(gw, ['nft', 'delete', 'table', 'inet', 'blackhole']);
    await sampleFor(30_000);
    const got = await dl;
    assert.equal(Number(got.stdout.trim()), file.bytes, 'the download completed intact through the outage');

    // the longest time without progress (either link) after the cut
    let stall = 0;
    let lastMove = cutAt;
    for (let i = 1; i < samples.length; i++) {
      const s = samples[i]!;
      const p = samples[i - 1]!;
      if (s.t < cutAt) continue;
      if (s.a + s.b - (p.a + p.b) > 16_384) {
        stall = Math.max(stall, p.t - lastMove);
        lastMove = s.t;
      }
    }
    const during = samples.filter((s) => s.t >= cutAt && s.t <= backAt);
    const duringB = during.at(-1)!.b - during[0]!.b;
    // when A carries the download again: the first second after its return where A has 4x B's bytes
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
    console.log(`backup failover: stall ${stall} ms after A went; B carried ${(duringB / 1e6).toFixed(1)} MB during the 4 s outage; A carried the download again ${returnedMs ?? 'never'} ms after it returned`);
    assert.ok(stall < 2000, `the download stalled ${stall} ms when A was blackholed`);
    assert.ok(duringB > 2e6, 'B carried the download during the outage');
    assert.notEqual(returnedMs, null, 'the traffic went back to A once it returned');
  });
});
