// The acceptance test of MPTCP acceleration: edgeward runs in a proxy namespace with two 50 Mbit/s
// paths to a server; curl downloads through its SOCKS5 listener. With `mptcp: true` the download
// must be at least 1.6x as fast as with `mptcp: false`, and the API must show the second subflow.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchChromiumIn } from '../helpers/browser.js';
import { setDefaultTransport, startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { download, startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab } from '../helpers/netns.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';
import { buildTwoPathLab, compareThroughEdgeward, type TwoPathLab } from '../helpers/two-path-lab.js';

const MIN_RATIO = 1.6;
const skip = requirement(labSkipReason({ needs: ['curl', 'mptcpize', 'python3', 'chromium'] }) ?? edgewardSkipReason());
if (skip) console.log(`SOCKS MPTCP lab test skipped: ${skip}`);

/** What GET /api/v1/connections says about one connection (the fields this test reads). */
interface ConnectionView {
  destination: { address: string; port: number };
  inEffect: { mptcp: boolean; subflows?: number } | null;
}

/** The connection to `address` in a GET /api/v1/connections body ({ total, connections: [...] }). */
function connectionTo(body: unknown, address: string): ConnectionView | undefined {
  const list = (body as { connections?: unknown } | undefined)?.connections;
  if (!Array.isArray(list)) return undefined;
  return (list as ConnectionView[]).find((c) => c?.destination?.address === address);
}

describe('SOCKS5 through edgeward over two 50 Mbit/s paths', { skip }, () => {
  const lab = new Lab();
  let topo: TwoPathLab;
  let file: FileServer;
  let ew: EdgewardInLab;
  let plainTcpMbps = 0;

  before(async () => {
    topo = await buildTwoPathLab(lab, { rateMbit: 50 });
    file = await startFileServer(lab, topo.server, { addr: topo.serverAddr, sizeMiB: 24 });
    ew = await startEdgeward(lab, topo.proxy);
  }, { timeout: 40_000 });

  after(async () => {
    try {
      if (ew?.process.running) await ew.stop();
    } finally {
      await lab.destroy();
    }
  });

  test('a download with mptcp:true is at least 1.6x as fast as with mptcp:false', { timeout: 60_000 }, async () => {
    let connections: { status: number; entry: ConnectionView | undefined; text: string } | null = null;
    const figures = await compareThroughEdgeward(topo, ew, file, {
      rounds: 2,
      stopWhenRatio: MIN_RATIO,
      onMptcpDownload: async () => {
        const r = await ew.api('GET', '/api/v1/connections');
        connections = { status: r.status, entry: connectionTo(r.body, topo.serverAddr), text: r.text };
      },
    });
    plainTcpMbps = figures.tcpMbps;
    for (const r of figures.runs) console.log(`  mptcp:${r.mptcp} ${r.mbps.toFixed(1)} Mbit/s in ${r.seconds.toFixed(2)} s, checksum ${r.checksumOk ? 'ok' : 'WRONG'}`);
    console.log(`through edgeward, ${file.bytes} bytes: mptcp:false ${figures.tcpMbps.toFixed(1)} Mbit/s, mptcp:true ${figures.mptcpMbps.toFixed(1)} Mbit/s, ratio ${figures.ratio.toFixed(2)}`);
    const seen = connections as { status: number; entry: ConnectionView | undefined; text: string } | null;
    const inEffect = seen?.entry?.inEffect;
    console.log(`during the MPTCP download GET /api/v1/connections answered ${seen?.status}: inEffect ${JSON.stringify(inEffect)}`);

    assert.ok(figures.runs.every((r) => r.checksumOk), 'a download through edgeward arrived corrupt');
    assert.ok(figures.ratio >= MIN_RATIO, `mptcp:true / mptcp:false = ${figures.ratio.toFixed(2)} < ${MIN_RATIO}`);
    assert.equal(seen?.status, 200, `GET /api/v1/connections: ${seen?.text.slice(0, 500)}`);
    assert.ok(seen.entry, `GET /api/v1/connections does not list the connection to ${topo.serverAddr}: ${seen.text.slice(0, 500)}`);
    assert.equal(inEffect?.mptcp, true, 'the connection should be reported as MPTCP in effect');
    assert.equal(inEffect?.subflows, 2, 'the connection should use two subflows (path A and path B)');
    // each subflow with its addresses and bytes, as the console's connections view shows them
    const list = (inEffect as { subflowList?: Array<{ local: { address: string }; bytes: { sent: number; received: number } }> } | undefined)?.subflowList ?? [];
    assert.equal(new Set(list.map((f) => f.local.address)).size, 2, `two subflows from two local addresses: ${JSON.stringify(list)}`);
    assert.ok(list.every((f) => f.bytes.received > 0), 'both subflows carried the download so far');
  });

  test('a cidr policy turns MPTCP on for its destination while the default stays off', { timeout: 40_000 }, async () => {
    await setDefaultTransport(ew, { mptcp: false });
    const created = await ew.api('POST', '/api/v1/policies', { match: { cidr: topo.serverSubnet }, transport: { mptcp: true } });
    assert.ok(created.status >= 200 && created.status < 300, `POST /api/v1/policies answered ${created.status}: ${created.text.slice(0, 500)}`);
    assert.ok(plainTcpMbps > 0, 'needs the mptcp:false figure of the previous test');
    let best = 0;
    for (let round = 1; round <= 2 && best / plainTcpMbps < MIN_RATIO; round++) {
      const d = await download(lab, topo.proxy, file.url, { socks5: ew.socks });
      assert.equal(d.sha256, file.sha256, 'download arrived corrupt');
      best = Math.max(best, d.mbps);
      console.log(`policy ${topo.serverSubnet} -> mptcp:true, round ${round}: ${d.mbps.toFixed(1)} Mbit/s (${(d.mbps / plainTcpMbps).toFixed(2)}x the mptcp:false download)`);
    }
    assert.ok(best / plainTcpMbps >= MIN_RATIO, `cidr policy download only ${(best / plainTcpMbps).toFixed(2)}x the plain TCP one`);

    // The server's path-B address is outside the policy's cidr: the default (plain TCP, one path) applies.
    const other = await download(lab, topo.proxy, file.url.replace(topo.serverAddr, topo.pathB.b.ip), { socks5: ew.socks });
    console.log(`destination outside ${topo.serverSubnet} (${topo.pathB.b.ip}): ${other.mbps.toFixed(1)} Mbit/s`);
    assert.equal(other.sha256, file.sha256, 'download arrived corrupt');
    assert.ok(other.mbps <= topo.rateMbit * 1.15, `${other.mbps.toFixed(1)} Mbit/s to ${topo.pathB.b.ip}: more than one ${topo.rateMbit} Mbit/s path, so MPTCP was used outside the policy`);
  });

  test('the console shows the multipath download over both paths, live', { timeout: 90_000 }, async () => {
    // the cidr policy of the test before (mptcp: true) still applies to the server's path-A address
    const dir = lab.tempDir('chromium');
    const shots = process.env.EDGEWARD_TEST_OUT ? join(process.env.EDGEWARD_TEST_OUT, 'console-mptcp') : join(dir, 'shots');
    mkdirSync(shots, { recursive: true });
    const browser = await launchChromiumIn(topo.proxy.name, dir);
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1400, height: 1000 });
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(String(e)));
      await page.goto(`${ew.apiBase}/console#/connections`, { waitUntil: 'load' });
      await page.waitForSelector('#signin-token', { visible: true, timeout: 10_000 });
      await page.type('#signin-token', ew.token);
      await page.click('#signin-token-submit');
      await page.waitForSelector('#view-connections', { visible: true, timeout: 10_000 });
      // a download slow enough to watch: 24 MiB at 1.2 MB/s, about 20 s
      const slow = lab.exec(topo.proxy, ['curl', '-sS', '-f', '--max-time', '60', '--limit-rate', '1200K', '--socks5', ew.socks, '-o', '/dev/null', file.url], { timeoutMs: 65_000 });
      try {
        const a = topo.pathA.a.ip;
        const b = topo.pathB.a.ip;
        await page.waitForFunction((x: string, y: string) => {
          const t = document.querySelector('#view-connections')?.textContent ?? '';
          return t.includes(`${x}:`) && t.includes(`${y}:`);
        }, { timeout: 15_000, polling: 250 }, a, b);
        const row = await page.evaluate(() => document.querySelector('#view-connections tr.vt-row')?.textContent ?? '');
        console.log(`console connections row: ${row}`);
        await page.screenshot({ path: join(shots, 'connections-mptcp.png') });
      } finally {
        await slow;
      }
      // the overview while downloads at full speed follow one another for 10 s
      await page.goto(`${ew.apiBase}/console#/overview`);
      const until = Date.now() + 10_000;
      let downloads = 0;
      let fastest = '';
      while (Date.now() < until) {
        await download(lab, topo.proxy, file.url, { socks5: ew.socks });
        downloads++;
        const shown = await page.$eval('#figure-down', (e) => e.textContent ?? '');
        if (/Mbit\/s/.test(shown) && (fastest === '' || parseFloat(shown) > parseFloat(fastest))) fastest = shown;
      }
      const share = await page.$eval('#figure-mptcp', (e) => e.textContent ?? '');
      console.log(`console overview during ${downloads} downloads: down up to ${fastest}, MPTCP share ${share}; screenshots in ${shots}`);
      await page.screenshot({ path: join(shots, 'overview-mptcp.png') });
      assert.ok(parseFloat(fastest) > topo.rateMbit, `the overview showed more than one path's ${topo.rateMbit} Mbit/s down (${fastest})`);
      assert.equal(share, '100 %', 'every new connection to the server is MPTCP');
      assert.deepEqual(problems, [], 'no console error in the page');
    } finally {
      await browser.close();
    }
  });

  test('edgeward stops on SIGTERM', { timeout: 20_000 }, async () => {
    const exit = await ew.stop(10_000);
    console.log(`edgeward exit after SIGTERM: code ${exit.code} signal ${exit.signal}${exit.forced ? ' (had to be SIGKILLed)' : ''}`);
    assert.equal(exit.forced, false, `edgeward did not stop on SIGTERM; stderr:\n${ew.process.stderr().slice(-2000)}`);
    assert.equal(exit.code, 0);
  });
});
