// Headless Chromium (Debian's /usr/bin/chromium) through puppeteer-core, as the browser tests start
// it: as root it needs --no-sandbox; its profile lives in the test's temp dir; puppeteer starts it as
// the leader of its own process group, which the test process's exit hook kills if the test dies.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { killOnExit, runCmd } from './process.js';

/** The path of Debian's chromium. */
export async function chromiumPath(): Promise<string> {
  return (await runCmd(['sh', '-c', 'command -v chromium'], { timeoutMs: 5000 })).stdout.trim() || '/usr/bin/chromium';
}

/**
 * `opts.executablePath`: a wrapper to run instead (one that starts chromium in a lab namespace);
 * `opts.pipe`: DevTools over pipes, for a browser whose debugging port would be out of reach.
 */
export async function launchChromium(dir: string, args: string[] = [], opts: { executablePath?: string; pipe?: boolean } = {}): Promise<Browser> {
  const browser = await puppeteer.launch({
    executablePath: opts.executablePath ?? (await chromiumPath()),
    pipe: opts.pipe === true,
    headless: true,
    args: ['--no-sandbox', ...args],
    userDataDir: join(dir, 'profile'),
    timeout: 30_000,
    protocolTimeout: 30_000,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const proc = browser.process();
  if (proc) killOnExit(proc, true);
  return browser;
}

/**
 * Chromium inside a lab namespace: started through `ip netns exec NS` (a wrapper script in `dir`),
 * driven over pipes, since a debugging port would be inside the namespace, out of this process's reach.
 */
export async function launchChromiumIn(nsName: string, dir: string): Promise<Browser> {
  const wrapper = join(dir, `chromium-in-${nsName}`);
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${nsName} ${await chromiumPath()} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return launchChromium(dir, [], { executablePath: wrapper, pipe: true });
}
