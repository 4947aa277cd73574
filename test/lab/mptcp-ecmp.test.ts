// ndiffports on equal-cost multipath (issue 12): one connection through edgeward to a server two
// hashed 50 Mbit/s links away (test/helpers/ecmp-lab.ts). Plain MPTCP with one subflow gets one
// link, as one TCP connection does; edgeward's ndiffports path manager with 8 subflows over the same
// pair of addresses, each from its own source port, spreads over both and must reach 1.6x. It picks
// the source ports (asking the kernel's routes which link each 5-tuple takes), so even 2 subflows
// get one link each; left to chance, all of N subflows would share one link 2^(1-N) of the time.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildEcmpLab, compareNdiffports, type EcmpLab } from '../helpers/ecmp-lab.js';
import { startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab } from '../helpers/netns.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const MIN_RATIO = 1.6;
const SUBFLOWS = 8;
const skip = requirement(labSkipReason({ needs: ['curl', 'mptcpize', 'python3'] }) ?? edgewardSkipReason());
if (skip) console.log(`ECMP ndiffports lab test skipped: ${skip}`);

describe('ndiffports over two ECMP links through edgeward', { skip }, () => {
  const lab = new Lab();
  let ecmp: EcmpLab;
  let file: FileServer;
  let ew: EdgewardInLab;

  before(async () => {
    ecmp = await buildEcmpLab(lab, { rateMbit: 50 });
    file = await startFileServer(lab, ecmp.server, { addr: ecmp.serviceAddr, sizeMiB: 32 }); // ~3 s over both links: the subflows' start weighs little
    // outgoing connections from the address the server routes back over both links
    ew = await startEdgeward(lab, ecmp.gw, { args: ['--bind-outgoing', ecmp.sourceAddr] });
  }, { timeout: 40_000 });

  after(async () => {
    try {
      if (ew?.process.running) await ew.stop();
    } finally {
      await lab.destroy();
    }
  });

  test(`ndiffports with ${SUBFLOWS} subflows is at least ${MIN_RATIO}x one subflow, and the record shows ${SUBFLOWS}`, { timeout: 90_000 }, async () => {
    const f = await compareNdiffports(lab, ecmp, ew, file, { subflows: SUBFLOWS, rounds: 3, stopWhenRatio: MIN_RATIO });
    for (const r of f.runs) console.log(`ecmp: ${r.mode} ${r.mbps.toFixed(1)} Mbit/s${r.intact ? '' : ' (CORRUPT)'}`);
    console.log(`ecmp: one subflow ${f.singleMbps.toFixed(1)} Mbit/s, ndiffports ${f.ndiffportsMbps.toFixed(1)} Mbit/s (${f.ratio.toFixed(2)}x); ${f.subflowsSeen} subflows up, ${f.perLink[0]} on link 0 and ${f.perLink[1]} on link 1`);
    assert.ok(
      f.runs.every((r) => r.intact),
      'every download arrived intact',
    );
    assert.ok(f.singleMbps < 1.3 * ecmp.rateMbit, `one subflow got ${f.singleMbps.toFixed(1)} Mbit/s: more than one link's ${ecmp.rateMbit}`);
    assert.equal(f.subflowsSeen, SUBFLOWS, `the connection record showed ${SUBFLOWS} subflows up`);
    assert.ok(f.perLink[0] > 0 && f.perLink[1] > 0, `the subflows hash to both links (${f.perLink.join(' / ')})`);
    console.log(`ecmp: the record's per-subflow bytes received, by link: ${f.bytesPerLink.map((b) => (b / 1e6).toFixed(1)).join(' / ')} MB`);
    assert.ok(f.bytesPerLink[0] > 1e6 && f.bytesPerLink[1] > 1e6, 'the record shows each link\'s subflows carrying bytes');
    assert.ok(f.ratio >= MIN_RATIO, `ndiffports ${f.ndiffportsMbps.toFixed(1)} Mbit/s is ${f.ratio.toFixed(2)}x one subflow's ${f.singleMbps.toFixed(1)}, not ${MIN_RATIO}x`);
  });

  test('ndiffports with 2 subflows: the path manager picks source ports the hash sends over different links, every time', { timeout: 90_000 }, async () => {
    // left to the kernel's port choice, 2 subflows land on one link half of the time (1 in 8 for 3 connections in a row)
    const splits: string[] = [];
    let best = 0;
    let single = 0;
    for (let i = 0; i < 3; i++) {
      const f = await compareNdiffports(lab, ecmp, ew, file, { subflows: 2, rounds: 1 });
      splits.push(f.perLink.join('/'));
      best = Math.max(best, f.ratio);
      single = Math.max(single, f.singleMbps);
      assert.ok(f.runs.every((r) => r.intact), 'every download arrived intact');
      assert.equal(f.subflowsSeen, 2, 'the record showed 2 subflows up');
    }
    console.log(`ecmp, ndiffports 2: subflows per link ${splits.join(', ')}; best ${best.toFixed(2)}x one subflow (${single.toFixed(1)} Mbit/s)`);
    assert.deepEqual(splits, ['1/1', '1/1', '1/1'], 'each connection had one subflow on each link');
    assert.ok(best >= MIN_RATIO, `ndiffports 2 reached ${best.toFixed(2)}x, not ${MIN_RATIO}x`);
  });
});
