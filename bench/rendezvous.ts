// `npm run bench -- --only rendezvous`: the rendezvous service and its peers on this machine, on
// loopback (the peers offer host candidates on 127.0.0.1 only, --ice-address):
//   1. time from `edgeward peer connect` to the first forwarded byte (the device's service writes a
//      banner at once), p50/p95 over N sessions, direct and relayed (--relay-only);
//   2. forwarded TCP throughput over the data channel, direct and relayed, next to a plain TCP
//      connection to the same service;
//   3. signaling capacity: D devices online at once (presence WebSockets, each after its hello),
//      with the server's RSS and CPU for them.
// References that cannot run here are named in the notes (coturn as the relay for these peers needs
// the peers to take TURN servers other than the signaling server's; ssh is not installed).
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { cpuTimes, spawnTracked, waitForOutput, type Tracked } from './procs.js';

export interface RendezvousOptions {
  sessions: number;
  devices: number;
  throughputBytes: number;
  clockTicks: number;
}

export interface RendezvousResult {
  firstByte: Record<'direct' | 'relayed', { samples: number[]; failures: string[] }>;
  throughput: Record<'direct' | 'relayed' | 'plain TCP', { mbps: number | null; error?: string }>;
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

function peerConnect(root: string, apiUrl: string, forward: string, relayOnly: boolean): Tracked {
  return spawnTracked('edgeward peer connect', process.execPath, [join(root, 'bin', 'edgeward.js'), 'peer', 'connect', 'box', '--server', apiUrl, '--user', 'bench', '--forward', forward, '--ice-address', '127.0.0.1', ...(relayOnly ? ['--relay-only'] : [])], {
    env: { ...process.env, EDGEWARD_PASSWORD: 'bench-password' },
  });
}

export async function measureRendezvous(root: string, tmpDir: string, o: RendezvousOptions, log: (line: string) => void): Promise<RendezvousResult> {
  const result: RendezvousResult = { firstByte: { direct: { samples: [], failures: [] }, relayed: { samples: [], failures: [] } }, throughput: { direct: { mbps: null }, relayed: { mbps: null }, 'plain TCP': { mbps: null } }, presence: null, failures: [] };
  const gw = spawnTracked('edgeward (rendezvous)', process.execPath, [join(root, 'bin', 'edgeward.js'), 'start', '--socks', '127.0.0.1:0', '--api', '127.0.0.1:0', '--data', join(tmpDir, 'rendezvous-data'), '--log-format', 'json', '--turn', '127.0.0.1:0', '--turn-secret', 'bench-secret', '--turn-allow-peers', '127.0.0.0/8', '--turn-user-allocations', '100000'], {
    env: { ...process.env, EDGEWARD_API_TOKEN: TOKEN },
  });
  const banner = await serve('banner');
  const source = await serve('source', o.throughputBytes);
  let device: Tracked | undefined;
  try {
    const up = await waitForOutput(gw, /"api":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"listening"|"msg":"listening"[^\n]*"api":"(http:\/\/127\.0\.0\.1:\d+)"/, 30_000, 'stderr');
    const apiUrl = up?.[1] ?? up?.[2];
    if (!apiUrl) throw new Error(`edgeward did not start: ${gw.stderr().slice(-1500)}`);
    await api(apiUrl, 'POST', '/api/v1/users', { username: 'bench', password: 'bench-password', rendezvous: true });
    const { token } = await api<{ token: string }>(apiUrl, 'POST', '/api/v1/devices', { user: 'bench', name: 'box' });
    device = spawnTracked('edgeward peer device', process.execPath, [join(root, 'bin', 'edgeward.js'), 'peer', 'device', '--server', apiUrl, '--expose', `banner=tcp:127.0.0.1:${portOf(banner)}`, '--expose', `source=tcp:127.0.0.1:${portOf(source)}`, '--ice-address', '127.0.0.1'], {
      env: { ...process.env, EDGEWARD_DEVICE_TOKEN: token },
    });
    if (!(await waitForOutput(device, /online as device box/, 15_000, 'stderr'))) throw new Error(`the device did not come online: ${device.stderr().slice(-1500)}`);

    // 1. connect -> first byte
    for (const path of ['direct', 'relayed'] as const) {
      for (let i = 0; i < o.sessions; i++) {
        const t0 = process.hrtime.bigint();
        const client = peerConnect(root, apiUrl, '0=banner', path === 'relayed');
        try {
          const m = await waitForOutput(client, /forwarding 127\.0\.0\.1:(\d+) to box's banner/, 30_000, 'stderr');
          if (!m) throw new Error(`no forward: ${client.stderr().slice(-500)}`);
          await firstByte(Number(m[1]));
          result.firstByte[path].samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (e) {
          result.firstByte[path].failures.push((e as Error).message);
        } finally {
          await client.stop(3000);
        }
      }
      log(`rendezvous: connect -> first byte, ${path}: ${result.firstByte[path].samples.map((x) => x.toFixed(0)).join(' ')} ms`);
    }

    // 2. throughput
    const plain = await download(portOf(source)).catch((e: Error) => ({ error: e.message }));
    result.throughput['plain TCP'] = 'error' in plain ? { mbps: null, error: plain.error } : { mbps: (plain.bytes * 8) / plain.seconds / 1e6 };
    for (const path of ['direct', 'relayed'] as const) {
      const client = peerConnect(root, apiUrl, '0=source', path === 'relayed');
      try {
        const m = await waitForOutput(client, /forwarding 127\.0\.0\.1:(\d+) to box's source/, 30_000, 'stderr');
        if (!m) throw new Error(`no forward: ${client.stderr().slice(-500)}`);
        const d = await download(Number(m[1]));
        if (d.bytes !== o.throughputBytes) throw new Error(`${d.bytes} of ${o.throughputBytes} bytes arrived`);
        result.throughput[path] = { mbps: (d.bytes * 8) / d.seconds / 1e6 };
      } catch (e) {
        result.throughput[path] = { mbps: null, error: (e as Error).message };
      } finally {
        await client.stop(3000);
      }
      log(`rendezvous: throughput ${path}: ${result.throughput[path].mbps?.toFixed(1) ?? result.throughput[path].error} Mbit/s`);
    }

    // 3. presence: D devices online at once
    result.presence = await presence(apiUrl, gw.pid, o, log);
  } catch (e) {
    result.failures.push((e as Error).message);
  } finally {
    await device?.stop(3000);
    await gw.stop(10_000);
    banner.close();
    source.close();
  }
  return result;
}

async function presence(apiUrl: string, pid: number, o: RendezvousOptions, log: (line: string) => void): Promise<NonNullable<RendezvousResult['presence']>> {
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
    // the bench's own device "box" is online too
    const serverOnline = Number(/^edgeward_rendezvous_devices_online (\d+)$/m.exec(metrics)?.[1] ?? 0) - 1;
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
  for (const path of ['direct', 'relayed'] as const) {
    const f = r.firstByte[path];
    const fmt = (x: number | undefined): string => (x === undefined ? '-' : `${x.toFixed(0)} ms`);
    rows.push([`peer connect -> first byte, ${path} (p50 / p95, ${f.samples.length} of ${o.sessions})`, `${fmt(pct(f.samples, 50))} / ${fmt(pct(f.samples, 95))}${f.failures.length ? `, ${f.failures.length} failed: ${f.failures[0]}` : ''}`]);
  }
  for (const k of ['direct', 'relayed', 'plain TCP'] as const) {
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
