// The columns of the bench: direct (no proxy), edgeward, microsocks, Dante. Each proxy runs as its
// own process on a free loopback port; a column that cannot run says why instead of failing the run.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, httpStatus, waitListening } from './net-util.js';
import { spawnTracked, which, type Tracked } from './procs.js';

export type TargetName = 'direct' | 'edgeward' | 'microsocks' | 'dante';
export const TARGET_NAMES: readonly TargetName[] = ['direct', 'edgeward', 'microsocks', 'dante'];
/** The servers a user would pick instead of edgeward: its ratios are against the better of them. */
export const PEER_NAMES: readonly TargetName[] = ['microsocks', 'dante'];

export interface Target {
  name: TargetName;
  /** SOCKS5 port on 127.0.0.1; undefined for direct */
  socksPort?: number;
  /** why this column is not measured ("not installed", "not built", "start failed: ...") */
  unavailable?: string;
  /** true when the proxy exists but would not start: a failure of the bench run */
  startFailed?: boolean;
  /** the proxy process, for CPU accounting */
  proc?: Tracked;
  /** edgeward's REST API (and /console) on loopback, with its API token */
  api?: { url: string; token: string };
  stop(): Promise<void>;
}

const ATTEMPTS = 3;

function tail(text: string, lines = 8): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

export function directTarget(): Target {
  return { name: 'direct', stop: async () => {} };
}

/** microsocks on 127.0.0.1, no authentication; "not installed" when it is not on PATH. */
export async function startMicrosocks(): Promise<Target> {
  const bin = which('microsocks');
  if (!bin) return { name: 'microsocks', unavailable: 'not installed', stop: async () => {} };
  let why = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freePort();
    const proc = spawnTracked('microsocks', bin, ['-i', '127.0.0.1', '-p', String(port)]);
    if (await waitListening(port, 5000, () => proc.status() === undefined)) {
      return { name: 'microsocks', socksPort: port, proc, stop: async () => void (await proc.stop(3000)) };
    }
    await proc.stop(1000);
    why = tail(proc.stderr()) || `not listening on ${port}`;
  }
  return { name: 'microsocks', unavailable: `start failed: ${why}`, startFailed: true, stop: async () => {} };
}

/**
 * Dante's danted (Debian's dante-server) on 127.0.0.1, no authentication, CONNECT to anywhere from
 * loopback clients; its config and pid file are written into the run's temp directory. It forks
 * child processes for the work; their CPU counts (cpuTimes). "not installed" without danted.
 */
export async function startDante(tmpDir: string): Promise<Target> {
  const bin = which('danted');
  if (!bin) return { name: 'dante', unavailable: 'not installed', stop: async () => {} };
  let why = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freePort();
    const conf = join(tmpDir, `danted-${attempt}.conf`);
    writeFileSync(
      conf,
      [
        'logoutput: stderr',
        `internal: 127.0.0.1 port = ${port}`,
        'external: 127.0.0.1',
        'clientmethod: none',
        'socksmethod: none',
        'user.privileged: root',
        'user.unprivileged: nobody',
        'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
        'socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }',
        '',
      ].join('\n'),
    );
    const proc = spawnTracked('dante', bin, ['-f', conf, '-p', join(tmpDir, `danted-${attempt}.pid`)]);
    if (await waitListening(port, 5000, () => proc.status() === undefined)) {
      return { name: 'dante', socksPort: port, proc, stop: async () => void (await proc.stop(3000)) };
    }
    await proc.stop(1000);
    why = tail(proc.stderr()) || `not listening on ${port}`;
  }
  return { name: 'dante', unavailable: `start failed: ${why}`, startFailed: true, stop: async () => {} };
}

/**
 * `edgeward start` from this checkout; "not built" until dist/cli/start.js exists. Ready when
 * GET /health on its API answers 200. nodeArgs go to node itself (e.g. --cpu-prof), startArgs to
 * `edgeward start` after the bench's own.
 */
export async function startEdgeward(root: string, tmpDir: string, nodeArgs: string[] = [], startArgs: string[] = []): Promise<Target> {
  if (!existsSync(join(root, 'dist', 'cli', 'start.js'))) {
    return { name: 'edgeward', unavailable: 'not built', stop: async () => {} };
  }
  let why = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const socksPort = await freePort();
    const apiPort = await freePort();
    if (socksPort === apiPort) continue;
    const dataDir = join(tmpDir, `edgeward-data-${attempt}`);
    mkdirSync(dataDir, { recursive: true });
    const args = [
      ...nodeArgs,
      join(root, 'bin', 'edgeward.js'),
      'start',
      '--socks', `127.0.0.1:${socksPort}`,
      '--api', `127.0.0.1:${apiPort}`,
      '--data', dataDir,
      '--log-level', 'warn',
      ...startArgs,
    ];
    const token = randomBytes(24).toString('hex');
    const env = { ...process.env, EDGEWARD_API_TOKEN: token };
    const proc = spawnTracked('edgeward', process.execPath, args, { env, cwd: root });
    const deadline = Date.now() + 30_000;
    let healthy = false;
    while (Date.now() < deadline && proc.status() === undefined) {
      if ((await httpStatus(`http://127.0.0.1:${apiPort}/health`, 1000)) === 200) {
        healthy = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (healthy && (await waitListening(socksPort, 5000, () => proc.status() === undefined))) {
      return { name: 'edgeward', socksPort, proc, api: { url: `http://127.0.0.1:${apiPort}`, token }, stop: async () => void (await proc.stop(15_000)) };
    }
    await proc.stop(5000);
    why = tail(proc.stderr()) || tail(proc.stdout()) || 'no 200 from /health within 30 s';
  }
  return { name: 'edgeward', unavailable: `start failed: ${why}`, startFailed: true, stop: async () => {} };
}
