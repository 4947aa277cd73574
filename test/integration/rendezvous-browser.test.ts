// The /rendezvous page in headless Chromium (puppeteer-core), against `edgeward peer device` on
// loopback: a user logs in on the page, sees their device online, opens a session (relayed through
// edgeward's TURN, so that Chromium and the device meet on loopback only), sees the path, sends a
// text the device answers, and sends a file that lands, intact, in the directory the device chose.
// The page is served with a strict Content-Security-Policy and runs under it (no inline script).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'puppeteer-core';
import { launchChromium } from '../helpers/browser.js';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { runCmd, startProcess, waitFor, type RunningProcess } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';

const skip = requirement(missingPrograms(['chromium']));
if (skip) process.stdout.write(`# skipping the rendezvous page tests: ${skip}\n`);

describe('the /rendezvous page in Chromium', { skip }, () => {
  let g: Gateway;
  let browser: Browser;
  let page: Page;
  let device: RunningProcess;
  let dir: string;
  let inbox: string;
  const cspViolations: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeward-rv-page-'));
    inbox = join(dir, 'inbox');
    await runCmd(['mkdir', '-p', inbox]);
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', 'page-secret', '--turn-allow-peers', '127.0.0.0/8'] });
    assert.equal((await g.api('POST', '/api/v1/users', { username: 'alice', password: 'alice-page-pw', rendezvous: true })).status, 201);
    const dev = await g.api<{ token: string }>('POST', '/api/v1/devices', { user: 'alice', name: 'box' });
    device = startProcess([process.execPath, BIN, 'peer', 'device', '--server', g.apiUrl, '--files', inbox, '--ice-address', '127.0.0.1'], { env: { EDGEWARD_DEVICE_TOKEN: dev.body.token } });
    await device.waitForOutput(/online as device box/, 15_000);
    browser = await launchChromium(dir);
    page = await browser.newPage();
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
  });

  after(async () => {
    await browser?.close();
    await device?.stop('SIGTERM', 5000);
    await g?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is served with a strict Content-Security-Policy and no inline script', async () => {
    const res = await fetch(`${g.apiUrl}/rendezvous`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const html = await res.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'every script is a file');
  });

  it('logs in, shows the device online, connects relayed, exchanges text and sends a file with progress', { timeout: 60_000 }, async () => {
    await page.goto(`${g.apiUrl}/rendezvous`);
    await page.type('#username', 'alice');
    await page.type('#password', 'wrong');
    await page.click('#login');
    await page.waitForFunction("document.getElementById('login-error').textContent.includes('wrong username or password')", { timeout: 10_000 });
    await page.evaluate("document.getElementById('password').value = ''");
    await page.type('#password', 'alice-page-pw');
    await page.click('#login');
    await page.waitForFunction("document.querySelector('#devices li[data-device=box] .online') !== null", { timeout: 10_000 });
    assert.equal(await page.evaluate("document.getElementById('who').textContent"), 'alice');

    await page.click('#relay-only');
    await page.click('#devices li[data-device=box] button.connect');
    await page.waitForFunction("document.getElementById('state').textContent === 'connected'", { timeout: 20_000 });
    await page.waitForFunction("document.getElementById('path').dataset.relayed === 'true'", { timeout: 10_000 });
    const path = (await page.evaluate("document.getElementById('path').textContent")) as string;
    process.stdout.write(`# page path: ${path}\n`);
    assert.match(path, /^relayed: relay udp/);
    // both ends report the pair to the server (the page's report is taken: no error frame), which shows it
    await waitFor('the session relayed in /api/v1/rendezvous/status', async () => {
      const st = (await g.api<{ sessions: Array<{ path: string; user: string }> }>('GET', '/api/v1/rendezvous/status')).body;
      return st.sessions.some((x) => x.user === 'alice' && x.path === 'relayed');
    }, 10_000, 200);
    const pageLog = (await page.evaluate("[...document.querySelectorAll('#log li')].map((li) => li.textContent).join(' | ')")) as string;
    assert.doesNotMatch(pageLog, /server: /, pageLog);

    await page.waitForFunction("[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('text channel open'))", { timeout: 10_000 });
    await page.type('#text', 'hello from the browser');
    await page.click('#send-text');
    await page.waitForFunction("[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('box: received 22 characters'))", { timeout: 10_000 });
    await device.waitForOutput(/text from alice: hello from the browser/, 5000);

    const content = randomBytes(600 * 1024);
    const local = join(dir, 'report.bin');
    writeFileSync(local, content);
    const input = await page.$('#file');
    await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(local);
    await page.click('#send-file');
    await page.waitForFunction("document.getElementById('file-status').textContent.startsWith('saved on box')", { timeout: 30_000 });
    assert.equal(await page.evaluate("document.getElementById('progress').value"), 1, 'the progress bar ends full');
    assert.deepEqual(readdirSync(inbox), ['report.bin']);
    assert.equal(createHash('sha256').update(readFileSync(join(inbox, 'report.bin'))).digest('hex'), createHash('sha256').update(content).digest('hex'), 'the file landed intact');

    // a second file of the same name does not overwrite the first
    await page.click('#send-file');
    await page.waitForFunction("document.getElementById('file-status').textContent.startsWith('saved on box')", { timeout: 30_000 });
    await device.waitForOutput(/report-1\.bin: 614400 bytes saved/, 10_000);
    assert.deepEqual(readdirSync(inbox).sort(), ['report-1.bin', 'report.bin']);

    const allocations = (await g.api<{ allocations: Array<{ user: string; bytes: { up: number; down: number } }> }>('GET', '/api/v1/turn/allocations')).body.allocations.filter((a) => a.user === 'alice');
    assert.ok(allocations.reduce((n, a) => n + a.bytes.up, 0) >= 2 * content.length, 'the files went through the relay');
    assert.deepEqual(cspViolations, [], 'the page runs under its policy');
  });
});
