// `npm run bench -- --only rendezvous`: the rendezvous service and its peers on this machine, on
// loopback (the peers offer host candidates on 127.0.0.1 only, --ice-address):
//   1. time from `edgeward peer connect` to the first forwarded byte (the device's service writes a
//      banner at once), p50/p95 over N sessions: direct; relayed through edgeward's TURN
//      (--relay-only); relayed through coturn (a second device and the client both given coturn
//      with --ice-server, so edgeward's TURN carries nothing); and, as the tool a user would pick
//      instead, `ssh -L` to an sshd on loopback (from spawning ssh to the first byte);
//   2. forwarded TCP throughput over the same routes, next to a plain TCP connection to the
//      same service;
//   3. signaling capacity: D devices online at once (presence WebSockets, each after its hello),
//      with the server's RSS and CPU for them.
// A reference that cannot run (coturn or sshd not installed) says so in its row.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { cpuTimes, run, spawnTracked, waitForOutput, which, type Tracked } from './procs.js';
import { restCredential } from '../src/rendezvous/turn-auth.js';
import { freePort } from './net-util.js';
import { startCoturn, type TurnServer } from './turn-servers.js';

export interface RendezvousOptions {
  sessions: number;
  devices: number;
  throughputBytes: number;
  clockTicks: number;
}

/** The ways to reach the device's services that the bench compares. */
export const ROUTES = ['direct', 'relayed', 'relayed via coturn', 'ssh -L'] as const;
export type Route = (typeof ROUTES)[number];

export interface RendezvousResult {
  firstByte: Record<Route, { samples: number[]; failures: string[]; unavailable?: string }>;
  throughput: Record<Route | 'plain TCP', { mbps: number | null; error?: string }>;
  presence: { devices: number; online: number; seconds: number; rssBeforeMiB: number; rssAfterMiB: number; kibPerDevice: number; cpuSeconds: number; error?: string } | null;
  failures: string[];
}

const TOKEN = randomBytes(16).toString('hex');

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function api<T>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** A TCP server: "banner" writes one line at once; "source" writes `bytes` then closes. */
function serve(kind: 'banner' | 'source', bytes = 0): Promise<net.Server> {
  const chunk = randomBytes(64 * 1024);
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    if (kind === 'banner') {
      s.end('hello\n');
      return;
    }
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(chunk.subarray(0, n))) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const portOf = (s: net.Server): number => (s.address() as net.AddressInfo).port;

/** Connects to 127.0.0.1:port and resolves when the first byte arrives. */
function firstByte(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('data', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
    s.setTimeout(20_000, () => {
      s.destroy();
      reject(new Error('no byte within 20 s'));
    });
  });
}

function download(port: number): Promise<{ bytes: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let bytes = 0;
    const s = net.connect(port, '127.0.0.1');
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.once('end', () => resolve({ bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }));
    s.once('error', reject);
    s.setTimeout(120_000, () => {
      s.destroy();
      reject(new Error(`only ${bytes} bytes within 120 s`));
    });
  });
}

/** A way to reach a service of the device: `open` starts the forward and resolves with its local port. */
interface Forwarder {
  open(service: 'banner' | 'source'): Promise<{ port: number; proc: Tracked }>;
}

function edgewardForwarder(root: string, apiUrl: string, device: string, extra: string[], env: NodeJS.ProcessEnv = {}): Forwarder {
  return {
    async open(service) {
      const proc = spawnTracked('edgeward peer connect', process.execPath, [join(root, 'bin', 'edgeward.js'), 'peer', 'connect', device, '--server', apiUrl, '--user', 'bench', '--forward', `0=${service}`, '--ice-address', '127.0.0.1', ...extra], {
        env: { ...process.env, EDGEWARD_PASSWORD: 'bench-password', ...env },
      });
      const m = await waitForOutput(proc, new RegExp(`forwarding 127\\.0\\.0\\.1:(\\d+) to ${device}'s ${service}`), 30_000, 'stderr');
      if (!m) {
        await proc.stop(3000);
        throw new Error(`no forward: ${proc.stderr().slice(-500)}`);
      }
      return { port: Number(m[1]), proc };
    },
  };
}

/**
 * sshd on 127.0.0.1 with a host key, an authorized key and a config of its own in the run's temp
 * directory (root's ~/.ssh and /etc/ssh are not touched), and `ssh -N -L` as the forwarder.
 * "not installed" when sshd or ssh is missing.
 */
async function startSsh(tmpDir: string, ports: { banner: number; source: number }): Promise<{ forwarder: Forwarder; sshd: Tracked } | { unavailable: string }> {
  const sshd = which('sshd') ?? (existsSync('/usr/sbin/sshd') ? '/usr/sbin/sshd' : undefined);
  const ssh = which('ssh');
  const keygen = which('ssh-keygen');
  if (!sshd || !ssh || !keygen) return { unavailable: 'not installed (apt-get install openssh-server)' };
  const dir = join(tmpDir, 'sshd');
  mkdirSync(dir, { recursive: true });
  for (const key of ['host', 'client']) {
    const r = await run('ssh-keygen', keygen, ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, key)], 10_000);
    if (r.code !== 0) return { unavailable: `ssh-keygen failed: ${r.stderr.trim()}` };
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client.pub')));
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, `PidFile ${join(dir, 'sshd.pid')}`, 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'AllowTcpForwarding yes', ''].join('\n'),
  );
  // sshd's privilege separation directory (the package's service creates it at boot)
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const daemon = spawnTracked('sshd', sshd, ['-D', '-e', '-f', join(dir, 'sshd_config')]);
  if (!(await waitForOutput(daemon, new RegExp(`Server listening on 127\\.0\\.0\\.1 port ${port}`), 10_000, 'stderr'))) {
    await daemon.stop(2000);
    return { unavailable: `sshd did not start: ${daemon.stderr().trim().slice(-300)}` };
  }
  const user = userInfo().username;
  return {
    sshd: daemon,
    forwarder: {
      async open(service) {
        const local = await freePort();
        const proc = spawnTracked('ssh -L', ssh, ['-v', '-N', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ExitOnForwardFailure=yes', '-i', join(dir, 'client'), '-p', String(port), '-L', `127.0.0.1:${local}:127.0.0.1:${ports[service]}`, `${user}@127.0.0.1`]);
        // ssh -v says so once the listener is up, after the login
        if (!(await waitForOutput(proc, new RegExp(`Local connections to (?:127\\.0\\.0\\.1|LOCALHOST):${local} forwarded`), 30_000, 'stderr'))) {
          await proc.stop(2000);
          throw new Error(`ssh -L did not forward: ${proc.stderr().trim().split("\n").slice(-3).join(" | ")}`);
        }
        return { port: local, proc };
      },
    },
  };
}

export async function measureRendezvous(root: string, tmpDir: string, o: RendezvousOptions, log: (line: string) => void): Promise<RendezvousResult> {
  const result: RendezvousResult = {
    firstByte: Object.fromEntries(ROUTES.map((r) => [r, { samples: [], failures: [] }])) as unknown as RendezvousResult['firstByte'],
    throughput: Object.fromEntries([...ROUTES, 'plain TCP'].map((r) => [r, { mbps: null }])) as unknown as RendezvousResult['throughput'],
    presence: null,
    failures: [],
  };
  const gw = spawnTracked('edgeward (rendezvous)', process.execPath, [join(root, 'bin', 'edgeward.js'), 'start', '--socks', '127.0.0.1:0', '--api', '127.0.0.1:0', '--data', join(tmpDir, 'rendezvous-data'), '--log-format', 'json', '--turn', '127.0.0.1:0', '--turn-secret', 'bench-secret', '--turn-allow-peers', '127.0.0.0/8', '--turn-user-allocations', '100000'], {
    env: { ...process.env, EDGEWARD_API_TOKEN: TOKEN },
  });
  const banner = await serve('banner');
  const source = await serve('source', o.throughputBytes);
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const up = await waitForOutput(gw, /"api":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"listening"|"msg":"listening"[^\n]*"api":"(http:\/\/127\.0\.0\.1:\d+)"/, 30_000, 'stderr');
    const apiUrl = up?.[1] ?? up?.[2];
    if (!apiUrl) throw new Error(`edgeward did not start: ${gw.stderr().slice(-1500)}`);
    await api(apiUrl, 'POST', '/api/v1/users', { username: 'bench', password: 'bench-password', rendezvous: true });
    const expose = ['--expose', `banner=tcp:127.0.0.1:${portOf(banner)}`, '--expose', `source=tcp:127.0.0.1:${portOf(source)}`, '--ice-address', '127.0.0.1'];
    let devices = 0;
    const startDevice = async (name: string, extra: string[], env: NodeJS.ProcessEnv = {}): Promise<void> => {
      devices++;
      const { token } = await api<{ token: string }>(apiUrl, 'POST', '/api/v1/devices', { user: 'bench', name });
      const device = spawnTracked(`edgeward peer device ${name}`, process.execPath, [join(root, 'bin', 'edgeward.js'), 'peer', 'device', '--server', apiUrl, ...expose, ...extra], { env: { ...process.env, EDGEWARD_DEVICE_TOKEN: token, ...env } });
      stops.push(() => device.stop(3000));
      if (!(await waitForOutput(device, new RegExp(`online as device ${name} `), 15_000, 'stderr'))) throw new Error(`the device ${name} did not come online: ${device.stderr().slice(-1500)}`);
    };
    await startDevice('box', []);

    const forwarders = new Map<Route, Forwarder>([
      ['direct', edgewardForwarder(root, apiUrl, 'box', [])],
      ['relayed', edgewardForwarder(root, apiUrl, 'box', ['--relay-only'])],
    ]);
    // coturn: a second device and the client both take it instead of edgeward's TURN
    const coturn: TurnServer = await startCoturn(tmpDir, 'bench-coturn-secret');
    stops.push(() => coturn.stop());
    if (coturn.port) {
      const cred = restCredential('bench', 'bench-coturn-secret', 3600);
      const ice = ['--ice-server', `turn:127.0.0.1:${coturn.port}?transport=udp`, '--ice-username', cred.username];
      await startDevice('box-coturn', ice, { EDGEWARD_ICE_CREDENTIAL: cred.password });
      forwarders.set('relayed via coturn', edgewardForwarder(root, apiUrl, 'box-coturn', ['--relay-only', ...ice], { EDGEWARD_ICE_CREDENTIAL: cred.password }));
    } else result.firstByte['relayed via coturn'].unavailable = coturn.unavailable ?? 'unavailable';
    const ssh = await startSsh(tmpDir, { banner: portOf(banner), source: portOf(source) });
    if ('forwarder' in ssh) {
      stops.push(() => ssh.sshd.stop(3000));
      forwarders.set('ssh -L', ssh.forwarder);
    } else result.firstByte['ssh -L'].unavailable = ssh.unavailable;

    // 1. start the forward -> first byte of the banner
    for (const [route, fwd] of forwarders) {
      for (let i = 0; i < o.sessions; i++) {
        const t0 = process.hrtime.bigint();
        let proc: Tracked | undefined;
        try {
          const f = await fwd.open('banner');
          proc = f.proc;
          await firstByte(f.port);
          result.firstByte[route].samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (e) {
          result.firstByte[route].failures.push((e as Error).message);
        } finally {
          await proc?.stop(3000);
        }
      }
      log(`rendezvous: start -> first byte, ${route}: ${result.firstByte[route].samples.map((x) => x.toFixed(0)).join(' ')} ms`);
    }

    // 2. throughput
    const plain = await download(portOf(source)).catch((e: Error) => ({ error: e.message }));
    result.throughput['plain TCP'] = 'error' in plain ? { mbps: null, error: plain.error } : { mbps: (plain.bytes * 8) / plain.seconds / 1e6 };
    for (const route of ROUTES) {
      const fwd = forwarders.get(route);
      if (!fwd) {
        result.throughput[route] = { mbps: null, error: result.firstByte[route].unavailable ?? 'unavailable' };
        continue;
      }
      let proc: Tracked | undefined;
      try {
        const f = await fwd.open('source');
        proc = f.proc;
        const d = await download(f.port);
        if (d.bytes !== o.throughputBytes) throw new Error(`${d.bytes} of ${o.throughputBytes} bytes arrived`);
        result.throughput[route] = { mbps: (d.bytes * 8) / d.seconds / 1e6 };
      } catch (e) {
        result.throughput[route] = { mbps: null, error: (e as Error).message };
      } finally {
        await proc?.stop(3000);
      }
      log(`rendezvous: throughput ${route}: ${result.throughput[route].mbps?.toFixed(1) ?? result.throughput[route].error} Mbit/s`);
    }

    // 3. presence: D devices online at once
    result.presence = await presence(apiUrl, gw.pid, o, devices, log);
  } catch (e) {
    result.failures.push((e as Error).message);
  } finally {
    for (const stop of stops.reverse()) await stop();
    await gw.stop(10_000);
    banner.close();
    source.close();
  }
  return result;
}

async function presence(apiUrl: string, pid: number, o: RendezvousOptions, ownDevices: number, log: (line: string) => void): Promise<NonNullable<RendezvousResult['presence']>> {
  const tokens: string[] = [];
  for (let i = 0; i < o.devices; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, o.devices - i) }, (_, j) => api<{ token: string }>(apiUrl, 'POST', '/api/v1/devices', { user: 'bench', name: `d${i + j}` })));
    tokens.push(...batch.map((b) => b.token));
  }
  const rssBefore = rssMiB(pid);
  const cpu0 = cpuTimes(pid, o.clockTicks);
  const t0 = process.hrtime.bigint();
  const sockets: WebSocket[] = [];
  let online = 0;
  const signalUrl = `${apiUrl.replace(/^http/, 'ws')}/api/v1/rendezvous/signal`;
  try {
    // 100 handshakes in flight at a time
    for (let i = 0; i < tokens.length; i += 100) {
      await Promise.all(
        tokens.slice(i, i + 100).map(
          (token) =>
            new Promise<void>((resolve, reject) => {
              const ws = new WebSocket(signalUrl);
              sockets.push(ws);
              ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', role: 'device', token })));
              ws.once('message', (data: Buffer) => {
                if ((JSON.parse(data.toString()) as { type: string }).type === 'welcome') {
                  online++;
                  resolve();
                } else reject(new Error(`hello refused: ${data.toString()}`));
              });
              ws.once('error', reject);
            }),
        ),
      );
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await new Promise((r) => setTimeout(r, 1000));
    const rssAfter = rssMiB(pid);
    const cpu1 = cpuTimes(pid, o.clockTicks);
    const metrics = await (await fetch(`${apiUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    // the bench's own devices ("box", and "box-coturn" when coturn runs) are online too
    const serverOnline = Number(/^edgeward_rendezvous_devices_online (\d+)$/m.exec(metrics)?.[1] ?? 0) - ownDevices;
    const r = {
      devices: o.devices,
      online: serverOnline,
      seconds,
      rssBeforeMiB: rssBefore,
      rssAfterMiB: rssAfter,
      kibPerDevice: ((rssAfter - rssBefore) * 1024) / o.devices,
      cpuSeconds: cpu0 && cpu1 ? cpu1.user + cpu1.sys - cpu0.user - cpu0.sys : NaN,
    };
    log(`rendezvous: ${online} devices online in ${seconds.toFixed(1)} s (server counts ${serverOnline}); RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`);
    return r;
  } catch (e) {
    return { devices: o.devices, online, seconds: NaN, rssBeforeMiB: rssBefore, rssAfterMiB: rssMiB(pid), kibPerDevice: NaN, cpuSeconds: NaN, error: (e as Error).message };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

function pct(samples: number[], p: number): number | undefined {
  if (samples.length === 0) return undefined;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** The printed table. */
export function formatRendezvous(r: RendezvousResult, o: RendezvousOptions): string {
  const rows: Array<[string, string]> = [];
  const fmt = (x: number | undefined): string => (x === undefined ? '-' : `${x.toFixed(0)} ms`);
  for (const route of ROUTES) {
    const f = r.firstByte[route];
    const what = route === 'ssh -L' ? 'ssh -L' : `peer connect, ${route}`;
    rows.push([`${what} -> first byte (p50 / p95, ${f.samples.length} of ${o.sessions})`, f.unavailable ? f.unavailable : `${fmt(pct(f.samples, 50))} / ${fmt(pct(f.samples, 95))}${f.failures.length ? `, ${f.failures.length} failed: ${f.failures[0]}` : ''}`]);
  }
  for (const k of [...ROUTES, 'plain TCP'] as const) {
    const t = r.throughput[k];
    rows.push([`forwarded TCP, ${k} (${(o.throughputBytes / 1048576).toFixed(0)} MiB, Mbit/s)`, t.mbps !== null ? t.mbps.toFixed(1) : `failed: ${t.error}`]);
  }
  const p = r.presence;
  if (p) {
    rows.push([`devices online (presence WebSockets)`, p.error ? `${p.online} of ${p.devices}: ${p.error}` : `${p.online} of ${p.devices} in ${p.seconds.toFixed(1)} s`]);
    rows.push([`server RSS (whole process) before -> with them`, `${p.rssBeforeMiB.toFixed(0)} -> ${p.rssAfterMiB.toFixed(0)} MiB (${p.kibPerDevice.toFixed(1)} KiB per device)`]);
    rows.push([`server CPU to take them online`, `${p.cpuSeconds.toFixed(2)} s (${((p.cpuSeconds * 1e6) / p.devices).toFixed(0)} us per device)`]);
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}
