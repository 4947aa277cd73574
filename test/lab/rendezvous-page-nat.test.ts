// The /rendezvous page from a browser behind a NAT (the NAT lab: the device behind NAT a, headless
// Chromium on host b behind NAT b, edgeward in the public namespace): the user logs in, connects to
// the device over whatever path ICE finds through the NATs, and a text goes there and back.
// Chromium runs inside host b's namespace through a wrapper (ip netns exec), driven by puppeteer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BIN, startEdgeward } from '../helpers/edgeward.js';
import { buildNatLab } from '../helpers/nat-lab.js';
import { withLab } from '../helpers/netns.js';
import { launchChromiumIn } from '../helpers/browser.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const skip = requirement(labSkipReason({ needs: ['chromium', 'nft'] }) ?? edgewardSkipReason());
if (skip) process.stdout.write(`# skipping the page-behind-NAT lab: ${skip}\n`);

describe('the /rendezvous page behind a NAT (lab)', { skip }, () => {
  it('logs in from host b, connects to the device behind NAT a, and a text goes there and back', { timeout: 120_000 }, () =>
    withLab(async (lab) => {
      const nl = await buildNatLab(lab, 'endpoint-independent', { b: 'symmetric' });
      const api = `http://${nl.serverAddr}:8080`;
      const ew = await startEdgeward(lab, nl.pub, { api: `${nl.serverAddr}:8080`, args: ['--turn', `${nl.serverAddr}:3478`, '--turn-secret', 'page-nat', '--allow-insecure-login'] });
      assert.equal((await ew.api('POST', '/api/v1/users', { username: 'alice', password: 'alice-nat-pw', rendezvous: true })).status, 201);
      const token = ((await ew.api('POST', '/api/v1/devices', { user: 'alice', name: 'box' })).body as { token: string }).token;
      const device = lab.spawn(nl.a.host, [process.execPath, BIN, 'peer', 'device', '--server', api, '--files', lab.tempDir('inbox')], { env: { EDGEWARD_DEVICE_TOKEN: token } });
      await device.waitForOutput(/online as device box/, 15_000);

      const browser = await launchChromiumIn(nl.b.host.name, lab.tempDir('chromium'));
      try {
        const page = await browser.newPage();
        await page.goto(`${api}/rendezvous`);
        await page.type('#username', 'alice');
        await page.type('#password', 'alice-nat-pw');
        await page.click('#login');
        await page.waitForFunction("document.querySelector('#devices li[data-device=box] .online') !== null", { timeout: 15_000 });
        await page.click('#devices li[data-device=box] button.connect');
        await page.waitForFunction("document.getElementById('state').textContent === 'connected'", { timeout: 40_000 }).catch(async (e: Error) =>
          assert.fail(`${e.message}; page log: ${String(await page.evaluate("[...document.querySelectorAll('#log li')].map((li) => li.textContent).join(' | ')"))}; device: ${device.stderr().slice(-1500)}`),
        );
        await page.waitForFunction("document.getElementById('path').textContent !== '-'", { timeout: 10_000 });
        process.stdout.write(`# page behind symmetric NAT -> device behind endpoint-independent NAT: ${String(await page.evaluate("document.getElementById('path').textContent"))}\n`);
        await page.waitForFunction("[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('text channel open'))", { timeout: 10_000 });
        await page.type('#text', 'through two NATs');
        await page.click('#send-text');
        await page.waitForFunction("[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('box: received 16 characters'))", { timeout: 10_000 });
        await device.waitForOutput(/text from alice: through two NATs/, 5000);
      } finally {
        await browser.close();
      }
    }),
  );
});
