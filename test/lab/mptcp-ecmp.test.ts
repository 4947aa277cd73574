// ndiffports on equal-cost multipath (issue 12): one connection through edgeward to a server two
// hashed 50 Mbit/s links away (test/helpers/ecmp-lab.ts). Plain MPTCP with one subflow gets one
// link, as one TCP connection does; edgeward's ndiffports path manager with 8 subflows over the same
// pair of addresses, each from its own source port, spreads over both and must reach 1.6x. With 8
// subflows the chance that the hash puts all of them on one link is 2/256.
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
    assert.ok(f.ratio >= MIN_RATIO, `ndiffports ${f.ndiffportsMbps.toFixed(1)} Mbit/s is ${f.ratio.toFixed(2)}x one subflow's ${f.singleMbps.toFixed(1)}, not ${MIN_RATIO}x`);
  });
});
