// The two columns of the TURN bench: edgeward's TURN server and coturn (`turnserver`), each its own
// process on a free loopback port with the same TURN REST secret and realm, and the echo peer
// (`turnutils_peer`) both relay to. A column that cannot run says why instead of failing the run.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import dgram from 'node:dgram';
import { join } from 'node:path';
import { spawnTracked, waitForOutput, which, type Tracked } from './procs.js';

export type TurnServerName = 'edgeward' | 'coturn';
export const TURN_SERVER_NAMES: readonly TurnServerName[] = ['edgeward', 'coturn'];

/** Realm both servers use (edgeward's default). */
export const TURN_REALM = 'edgeward';

export interface TurnServer {
  name: TurnServerName;
  /** UDP (and TCP) port on 127.0.0.1 */
  port?: number;
  /** why this column is not measured ("not installed", "not built", "start failed: ...") */
  unavailable?: string;
  /** true when the server exists but would not start: a failure of the bench run */
  startFailed?: boolean;
  proc?: Tracked;
  stop(): Promise<void>;
}

/** coturn's relay ports: above the ephemeral range (32768-60999), so they never meet edgeward's or the clients'. */
export const COTURN_MIN_PORT = 61000;
export const COTURN_MAX_PORT = 65535;

const ATTEMPTS = 3;

function tail(text: string, lines = 8): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

/** A UDP port that was free on 127.0.0.1 a moment ago (TURN listens on UDP and TCP; the caller retries). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

/** true when something answers a STUN Binding request on 127.0.0.1:port within timeoutMs. */
export function stunAnswers(port: number, timeoutMs: number): Promise<boolean> {
  const req = Buffer.alloc(20);
  req.writeUInt16BE(0x0001, 0); // Binding request, no attributes
  req.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(req, 8);
  return answered(port, req, (m) => m.length >= 20 && m.subarray(8, 20).equals(req.subarray(8, 20)), timeoutMs);
}

/** Sends `probe` to 127.0.0.1:port every 100 ms until a datagram `matches` (true) or timeoutMs pass (false). */
function answered(port: number, probe: Buffer, matches: (m: Buffer) => boolean, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      clearInterval(again);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    const again = setInterval(() => s.send(probe, port, '127.0.0.1'), 100);
    s.on('error', () => undefined);
    s.on('message', (m) => {
      if (matches(m)) done(true);
    });
    s.send(probe, port, '127.0.0.1');
  });
}

/**
 * `edgeward start` from this checkout with --turn on a free loopback port and only the rendezvous
 * service of interest listening (SOCKS on a free port too: it cannot be switched off). Ready when
 * the JSON "listening" log line names the TURN address and a STUN Binding request is answered.
 */
export async function startEdgewardTurn(root: string, tmpDir: string, secret: string): Promise<TurnServer> {
  if (!existsSync(join(root, 'dist', 'cli', 'start.js'))) return { name: 'edgeward', unavailable: 'not built', stop: async () => {} };
  let why = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const dataDir = join(tmpDir, `edgeward-turn-data-${attempt}`);
    mkdirSync(dataDir, { recursive: true });
    const args = [
      join(root, 'bin', 'edgeward.js'),
      'start',
      '--socks', '127.0.0.1:0',
      '--api', '127.0.0.1:0',
      '--data', dataDir,
      '--log-format', 'json',
      '--turn', '127.0.0.1:0',
      '--turn-secret', secret,
      '--turn-realm', TURN_REALM,
      '--turn-allow-peers', '127.0.0.0/8',
      // coturn has no per-user quota nor per-source 401 budget by default: lift edgeward's, so that
      // both serve uclient's 100 clients of one user from one address and the allocation load alike
      '--turn-user-allocations', '1000000',
      '--turn-auth-rate', '1000000',
    ];
    const env = { ...process.env, EDGEWARD_API_TOKEN: randomBytes(24).toString('hex') };
    const proc = spawnTracked('edgeward (turn)', process.execPath, args, { env, cwd: root });
    // the gateway logs to stderr: wait there for {"msg":"listening", "turn":"127.0.0.1:PORT"}
    const deadline = Date.now() + 30_000;
    let port: number | undefined;
    while (Date.now() < deadline && proc.status() === undefined) {
      const m = /"turn":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"listening"/.exec(proc.stderr());
      if (m) {
        port = Number(m[1]);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (port !== undefined && (await stunAnswers(port, 5000))) {
      return { name: 'edgeward', port, proc, stop: async () => void (await proc.stop(15_000)) };
    }
    await proc.stop(5000);
    why = tail(proc.stderr()) || tail(proc.stdout()) || 'no "listening" log line with a turn address within 30 s';
  }
  return { name: 'edgeward', unavailable: `start failed: ${why}`, startFailed: true, stop: async () => {} };
}

/**
 * coturn's `turnserver` on 127.0.0.1 with the same REST secret and realm, loopback peers allowed,
 * relay ports COTURN_MIN_PORT-COTURN_MAX_PORT; its log, pid file and (unused) user database go to
 * the run's temp directory, not /var. "not installed" when turnserver is not on PATH.
 */
export async function startCoturn(tmpDir: string, secret: string): Promise<TurnServer> {
  const bin = which('turnserver');
  if (!bin) return { name: 'coturn', unavailable: 'not installed', stop: async () => {} };
  let why = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freeUdpPort();
    const dir = join(tmpDir, `coturn-${attempt}`);
    mkdirSync(dir, { recursive: true });
    const args = [
      '-n', '--no-cli', '--no-tls', '--no-dtls',
      '--listening-ip', '127.0.0.1', '--relay-ip', '127.0.0.1', '--listening-port', String(port),
      '--min-port', String(COTURN_MIN_PORT), '--max-port', String(COTURN_MAX_PORT),
      '--allow-loopback-peers',
      '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm', TURN_REALM,
      '--fingerprint',
      '--log-file', join(dir, 'turnserver.log'), '--no-stdout-log', '--simple-log',
      '--pidfile', join(dir, 'turnserver.pid'),
      '--userdb', join(dir, 'turndb'),
    ];
    const proc = spawnTracked('turnserver', bin, args);
    if (await stunAnswers(port, 5000)) {
      return { name: 'coturn', port, proc, stop: async () => void (await proc.stop(5000)) };
    }
    await proc.stop(2000);
    why = tail(proc.stderr()) || tail(proc.stdout()) || `no STUN answer on ${port}`;
  }
  return { name: 'coturn', unavailable: `start failed: ${why}`, startFailed: true, stop: async () => {} };
}

export interface EchoPeer {
  port: number;
  proc: Tracked;
}

/**
 * `turnutils_peer -p PORT -L 127.0.0.1`: the UDP echo peer both servers relay to. uclient also
 * sends to PORT+1 (its RTCP channel), so the port and the next one must be free.
 */
export async function startEchoPeer(): Promise<EchoPeer> {
  const bin = which('turnutils_peer');
  if (!bin) throw new Error('turnutils_peer not on PATH');
  let why = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freeUdpPort();
    if (port >= 65535) continue;
    const proc = spawnTracked('turnutils_peer', bin, ['-p', String(port), '-L', '127.0.0.1']);
    await waitForOutput(proc, /./, 300); // it prints nothing when all is well; give it a moment to bind
    if (proc.status() === undefined && (await udpEchoes(port, 2000))) return { port, proc };
    await proc.stop(1000);
    why = tail(proc.stderr()) || tail(proc.stdout()) || `no echo on ${port}`;
  }
  throw new Error(`turnutils_peer did not start: ${why}`);
}

/** true when a datagram sent to 127.0.0.1:port comes back within timeoutMs. */
function udpEchoes(port: number, timeoutMs: number): Promise<boolean> {
  const probe = randomBytes(16);
  return answered(port, probe, (m) => m.equals(probe), timeoutMs);
}
