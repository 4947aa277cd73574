// pathManager fullmesh and backup through edgeward's own path manager (issue 12), on two 50 Mbit/s
// uplinks with no MPTCP endpoint configured anywhere (test/helpers/uplinks-lab.ts):
// - fullmesh over both uplinks downloads at least 1.8x as fast as one path;
// - with uplink B marked backup, B carries under 5 % of a download while A works; when A is
//   blackholed the download goes on over B (stall under 2 s) and completes intact; when A returns,
//   the traffic goes back to A.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab } from '../helpers/netns.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';
import { buildUplinksLab, compareFullmesh, measureBackupFailover, type UplinksLab } from '../helpers/uplinks-lab.js';

const MIN_FULLMESH_RATIO = 1.8;
const skip = requirement(labSkipReason({ needs: ['curl', 'mptcpize', 'python3', 'nft'] }) ?? edgewardSkipReason());
if (skip) console.log(`MPTCP fullmesh/backup lab test skipped: ${skip}`);

describe("fullmesh and backup uplinks through edgeward's path manager, no MPTCP endpoint configured", { skip }, () => {
  const lab = new Lab();
  let topo: UplinksLab;
  let file: FileServer;
  let longFile: FileServer;
  let ew: EdgewardInLab;

  before(async () => {
    topo = await buildUplinksLab(lab, { rateMbit: 50 });
    file = await startFileServer(lab, topo.server, { addr: topo.linkA.b.ip, sizeMiB: 48 });
    longFile = await startFileServer(lab, topo.server, { addr: topo.linkA.b.ip, port: 8001, sizeMiB: 96 });
    ew = await startEdgeward(lab, topo.gw, { args: topo.uplinksArg });
    const endpoints = await lab.ip(topo.gw, ['mptcp', 'endpoint', 'show']);
    assert.equal(endpoints.stdout.trim(), '', 'no kernel endpoint on the gateway');
  }, { timeout: 40_000 });

  after(async () => {
    try {
      if (ew?.process.running) await ew.stop();
    } finally {
      await lab.destroy();
    }
  });

  test(`fullmesh over both uplinks is at least ${MIN_FULLMESH_RATIO}x one path`, { timeout: 90_000 }, async () => {
    const f = await compareFullmesh(lab, topo, ew, file, { rounds: 3, stopWhenRatio: MIN_FULLMESH_RATIO, log: console.log });
    assert.ok(f.intact, 'every download arrived intact');
    assert.ok(f.ratio >= MIN_FULLMESH_RATIO, `fullmesh ${f.fullmeshMbps.toFixed(1)} Mbit/s is not ${MIN_FULLMESH_RATIO}x one path's ${f.singleMbps.toFixed(1)}`);
  });

  test('backup uplink B: under 5 % while A works, the rest when A is blackholed (stall < 2 s), back to A when it returns', { timeout: 90_000 }, async () => {
    const f = await measureBackupFailover(lab, topo, ew, file, longFile, { outageMs: 4000 });
    console.log(
      `backup: ${(f.calmShareB * 100).toFixed(2)} % on B while A worked; A blackholed: stall ${f.stallMs} ms, B carried ${(f.outageBytesB / 1e6).toFixed(1)} MB in the 4 s; A carried the download again ${f.returnedMs ?? 'never'} ms after it returned`,
    );
    assert.ok(f.intact, 'both downloads arrived whole');
    assert.ok(f.calmShareB < 0.05, `B carried ${(f.calmShareB * 100).toFixed(1)} % of the download while A worked`);
    assert.ok(f.stallMs < 2000, `the download stalled ${f.stallMs} ms when A was blackholed`);
    assert.ok(f.outageBytesB > 2e6, 'B carried the download during the outage');
    assert.notEqual(f.returnedMs, null, 'the traffic went back to A once it returned');
    // a fresh subflow is tried on A once a second while its old one is silent: back within ~1 s of A's return, not the old one's next retransmission (~3 s)
    assert.ok(f.returnedMs! < 2000, `the traffic went back to A ${f.returnedMs} ms after A returned`);
  });
});
