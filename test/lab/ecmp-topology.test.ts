// The ECMP lab's own acceptance test: before the ndiffports lab (issue 12) measures edgeward on it,
// this proves with plain TCP and real clients that the topology does what that lab relies on. The
// kernel hashes each 5-tuple to one of the two 50 Mbit/s links, the same way in both directions, and
// `ip route get` tells which; two connections on different links together get about twice one
// link's rate; a single connection gets one link's rate (the baseline one MPTCP subflow gets).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildEcmpLab, downloadFrom, linkBytes, linkOf, returnLinkOf, sportsByLink, type EcmpLab, type LinkIndex } from '../helpers/ecmp-lab.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab, listNamespaces } from '../helpers/netns.js';
import { labSkipReason, requirement } from '../helpers/requirements.js';

const skip = requirement(labSkipReason({ needs: ['curl', 'python3'] }));
if (skip) console.log(`ECMP lab test skipped: ${skip}`);

const RATE_MBIT = 50;
const DPORT = 8000;
/** 12 MiB: about 2 s per download at 50 Mbit/s, long enough that start-up costs do not matter */
const FILE_MIB = 12;
/** the source ports whose links the first test asks about */
const PROBE_SPORTS = Array.from({ length: 32 }, (_, i) => 40000 + i);
/** the source ports downloads pick from (not reused: each connection gets a port of its own) */
const DOWNLOAD_SPORTS = Array.from({ length: 32 }, (_, i) => 41000 + i);
const MIN_PARALLEL_RATIO = 1.5;
const MAX_SINGLE_RATIO = 1.3;

/** Received-bytes differences on gw's link ends around `transfer`. */
async function measureLinks<T>(lab: Lab, ecmp: EcmpLab, transfer: () => Promise<T>): Promise<{ result: T; rx: [number, number] }> {
  const before = await linkBytes(lab, ecmp);
  const result = await transfer();
  const after = await linkBytes(lab, ecmp);
  return { result, rx: [after[0] - before[0], after[1] - before[1]] };
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

describe(`ECMP lab: two ${RATE_MBIT} Mbit/s links, per-5-tuple hashing both ways`, { skip }, () => {
  const lab = new Lab();
  let ecmp: EcmpLab;
  let file: FileServer;
  /** DOWNLOAD_SPORTS by the link linkOf gives them */
  let downloadPorts: [number[], number[]];

  before(async () => {
    ecmp = await buildEcmpLab(lab, { rateMbit: RATE_MBIT });
    file = await startFileServer(lab, ecmp.server, { addr: ecmp.serviceAddr, port: DPORT, sizeMiB: FILE_MIB, mptcp: false });
    downloadPorts = await sportsByLink(lab, ecmp, DOWNLOAD_SPORTS, DPORT);
  }, { timeout: 30_000 });

  after(async () => {
    await lab.destroy();
    const left = (await listNamespaces()).filter((n) => lab.namespaceNames.includes(n));
    assert.deepEqual(left, [], 'the lab left namespaces behind');
  });

  test('MPTCP is set up for 8 subflows with nothing for the kernel path manager to do', async () => {
    for (const ns of [ecmp.gw, ecmp.server]) {
      const limits = (await lab.ip(ns, ['mptcp', 'limits', 'show'])).stdout.trim();
      const endpoints = (await lab.ip(ns, ['mptcp', 'endpoint', 'show'])).stdout.trim();
      console.log(`${ns.role}: mptcp limits "${limits}", endpoints "${endpoints}"`);
      assert.match(limits, /\bsubflows 8\b/);
      assert.match(limits, /\badd_addr_accepted 8\b/);
      assert.equal(endpoints, '', `${ns.role} has MPTCP endpoints: the kernel path manager would add subflows of its own`);
    }
  });

  test('linkOf spreads source ports over both links, answers the same twice, and the server hashes them back the same way', { timeout: 20_000 }, async () => {
    const first: LinkIndex[] = [];
    const again: LinkIndex[] = [];
    const back: LinkIndex[] = [];
    for (const sport of PROBE_SPORTS) first.push(await linkOf(lab, ecmp, sport, DPORT));
    for (const sport of PROBE_SPORTS) again.push(await linkOf(lab, ecmp, sport, DPORT));
    for (const sport of PROBE_SPORTS) back.push(await returnLinkOf(lab, ecmp, sport, DPORT));
    const onLink1 = first.filter((l) => l === 1).length;
    const agree = first.filter((l, i) => back[i] === l).length;
    console.log(`sports ${PROBE_SPORTS[0]}..${PROBE_SPORTS.at(-1)} -> ${ecmp.serviceAddr}:${DPORT} (hash seed ${ecmp.hashSeed}): link 0 ${first.length - onLink1}, link 1 ${onLink1}: ${first.join('')}`);
    console.log(`server's route back over the same link: ${agree}/${first.length}; download sports on link 0: ${downloadPorts[0].length}, link 1: ${downloadPorts[1].length}`);
    assert.ok(first.includes(0) && first.includes(1), `every tuple hashes to link ${first[0]}: no ECMP spreading`);
    assert.deepEqual(again, first, 'linkOf changed its answer for the same 5-tuple');
    assert.deepEqual(back, first, "the server sends some flows' data back over the other link than gw sends them on");
    assert.ok(downloadPorts[0].length >= 2 && downloadPorts[1].length >= 2, 'too few download ports on one link for the download tests');
  });

  test(`two downloads on different links together get more than ${MIN_PARALLEL_RATIO}x one link`, { timeout: 40_000 }, async () => {
    let best = 0;
    for (let round = 0; round < 2 && best < MIN_PARALLEL_RATIO * RATE_MBIT; round++) {
      const [sport0, sport1] = [downloadPorts[0][round]!, downloadPorts[1][round]!];
      const { result, rx } = await measureLinks(lab, ecmp, () => Promise.all([downloadFrom(lab, ecmp, file.url, sport0), downloadFrom(lab, ecmp, file.url, sport1)]));
      const [d0, d1] = result;
      // both started together: the pair's rate is all the bytes over the time the slower one took
      const combined = ((d0.bytes + d1.bytes) * 8) / Math.max(d0.seconds, d1.seconds) / 1e6;
      best = Math.max(best, combined);
      const total = rx[0] + rx[1];
      console.log(
        `round ${round + 1}: sport ${d0.sport} (link 0) ${d0.mbps.toFixed(1)} Mbit/s in ${d0.seconds.toFixed(2)} s, sport ${d1.sport} (link 1) ${d1.mbps.toFixed(1)} Mbit/s in ${d1.seconds.toFixed(2)} s; ` +
          `together ${combined.toFixed(1)} Mbit/s (${(combined / RATE_MBIT).toFixed(2)}x); received on link 0 ${mib(rx[0])} (${((100 * rx[0]) / total).toFixed(1)} %), link 1 ${mib(rx[1])} (${((100 * rx[1]) / total).toFixed(1)} %)`,
      );
      for (const d of [d0, d1]) assert.equal(d.sha256, file.sha256, `download from sport ${d.sport} arrived corrupt`);
      // each link carried (at least) the whole file of the flow linkOf put on it
      for (const i of [0, 1] as const) assert.ok(rx[i] >= file.bytes && rx[i] / total >= 0.4, `link ${i} received only ${mib(rx[i])} of ${mib(total)}: the flows did not take the links linkOf gave`);
    }
    assert.ok(best > MIN_PARALLEL_RATIO * RATE_MBIT, `two flows on different links together got only ${best.toFixed(1)} Mbit/s, not > ${MIN_PARALLEL_RATIO}x ${RATE_MBIT}`);
  });

  test(`one download alone gets about one link's rate (< ${MAX_SINGLE_RATIO}x)`, { timeout: 20_000 }, async () => {
    const sport = downloadPorts[0][2] ?? downloadPorts[0].at(-1)!;
    const link = await linkOf(lab, ecmp, sport, DPORT);
    const { result: d, rx } = await measureLinks(lab, ecmp, () => downloadFrom(lab, ecmp, file.url, sport));
    console.log(`sport ${sport} (link ${link}) alone: ${d.mbps.toFixed(1)} Mbit/s in ${d.seconds.toFixed(2)} s (${(d.mbps / RATE_MBIT).toFixed(2)}x); received on link 0 ${mib(rx[0])}, link 1 ${mib(rx[1])}`);
    assert.equal(d.sha256, file.sha256, 'download arrived corrupt');
    assert.ok(rx[link] >= file.bytes, `link ${link} (linkOf's answer) received only ${mib(rx[link])}`);
    assert.ok(rx[link === 0 ? 1 : 0] < file.bytes * 0.05, `the single flow spilled onto the other link: ${mib(rx[link === 0 ? 1 : 0])}`);
    assert.ok(d.mbps < MAX_SINGLE_RATIO * RATE_MBIT, `one flow got ${d.mbps.toFixed(1)} Mbit/s, more than one ${RATE_MBIT} Mbit/s link can carry`);
    // and it is not held below the link's rate by something else (CPU, a mis-sized queue)
    assert.ok(d.mbps > 0.6 * RATE_MBIT, `one flow got only ${d.mbps.toFixed(1)} Mbit/s of a ${RATE_MBIT} Mbit/s link`);
  });
});
