// Headless Chromium (Debian's /usr/bin/chromium) through puppeteer-core, as the browser tests start
// it: as root it needs --no-sandbox; its profile lives in the test's temp dir; puppeteer starts it as
// the leader of its own process group, which the test process's exit hook kills if the test dies.
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { killOnExit, runCmd } from './process.js';

export async function launchChromium(dir: string, args: string[] = []): Promise<Browser> {
  const chromium = await runCmd(['sh', '-c', 'command -v chromium'], { timeoutMs: 5000 });
  const browser = await puppeteer.launch({
    executablePath: chromium.stdout.trim() || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', ...args],
    userDataDir: join(dir, 'profile'),
    timeout: 20_000,
    protocolTimeout: 20_000,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const proc = browser.process();
  if (proc) killOnExit(proc, true);
  return browser;
}
