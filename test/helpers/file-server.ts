// A file served over HTTP inside a lab namespace (python's http.server, optionally an MPTCP
// listener) and curl downloads of it from another namespace, with throughput and checksum.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Lab, Netns } from './netns.js';
import { HarnessError, sleep, type RunningProcess } from './process.js';

export interface FileServer {
  /** URL of the random file */
  url: string;
  sha256: string;
  bytes: number;
  process: RunningProcess;
}

/**
 * Serves a random file of `sizeMiB` from `ns` with python's http.server, as an MPTCP listener
 * (mptcpize) unless mptcp is false. Resolves once the file can be fetched inside the namespace.
 */
export async function startFileServer(lab: Lab, ns: Netns, opts: { addr: string; port?: number; sizeMiB?: number; mptcp?: boolean }): Promise<FileServer> {
  const port = opts.port ?? 8000;
  const bytes = Math.round((opts.sizeMiB ?? 24) * 1024 * 1024);
  const dir = lab.tempDir('www');
  const data = randomBytes(bytes);
  await writeFile(join(dir, 'file.bin'), data);
  const sha256 = createHash('sha256').update(data).digest('hex');
  const argv = ['python3', '-m', 'http.server', String(port), '--bind', '0.0.0.0', '--directory', dir];
  const proc = lab.spawn(ns, opts.mptcp === false ? argv : ['mptcpize', 'run', ...argv]);
  const url = `http://${opts.addr.includes(':') ? `[${opts.addr}]` : opts.addr}:${port}/file.bin`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const head = await lab.exec(ns, ['curl', '-sS', '-f', '-I', '--max-time', '2', url], { allowFailure: true, timeoutMs: 5000 });
    if (head.code === 0) break;
    if (!proc.running) throw new HarnessError('exec_failed', `http.server exited: ${proc.stderr().slice(-2000)}`);
    if (Date.now() > deadline) throw new HarnessError('wait_timeout', `http.server in ${ns.name} not answering at ${url} after 10 s: ${head.stderr.trim()}`);
    await sleep(100);
  }
  return { url, sha256, bytes, process: proc };
}

export interface Download {
  bytes: number;
  seconds: number;
  /** curl's speed_download in Mbit/s (10^6 bit/s) */
  mbps: number;
  sha256: string;
}

export interface DownloadOptions {
  /** run curl under mptcpize (an MPTCP client) */
  mptcpize?: boolean;
  /** host:port of a SOCKS5 proxy (curl --socks5) */
  socks5?: string;
  timeoutMs?: number;
}

/** Downloads `url` with curl inside `ns` into a temp file; returns curl's speed and the file's sha256. */
export async function download(lab: Lab, ns: Netns, url: string, opts: DownloadOptions = {}): Promise<Download> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const out = join(lab.tempDir('dl'), 'download.bin');
  const curl = ['curl', '-sS', '-f', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-o', out, '-w', '%{size_download} %{time_total} %{speed_download}'];
  if (opts.socks5) curl.push('--socks5', opts.socks5);
  curl.push(url);
  const r = await lab.exec(ns, opts.mptcpize ? ['mptcpize', 'run', ...curl] : curl, { timeoutMs: timeoutMs + 5000 });
  const [size, time, speed] = r.stdout.trim().split(/\s+/).map(Number);
  if (size === undefined || time === undefined || speed === undefined || [size, time, speed].some((n) => !Number.isFinite(n))) {
    throw new HarnessError('exec_failed', `unexpected curl output "${r.stdout.trim()}"`);
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(out)) hash.update(chunk as Buffer);
  await rm(out, { force: true });
  return { bytes: size, seconds: time, mbps: (speed * 8) / 1e6, sha256: hash.digest('hex') };
}
