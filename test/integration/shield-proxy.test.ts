// The shield's L4 reverse proxy (shield/proxy.ts) on loopback, in front of real servers: what a
// user of a protected service notices. Relaying is exact (half-close, 20 MB by sha256, bounded
// buffering); clients that say nothing, send slowly (slowhttptest's slowloris), read slowly
// (slowhttptest -X) or shut their window are closed while a legitimate client is served; the
// per-source limit and the cap serve preferred and well-behaved sources first; nginx reads the
// PROXY v2 header and sees the client's own address. Only 127.0.0.0/8 and ::1 are used.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it, type TestContext } from 'node:test';
import { getTcpInfo, socketFd } from '../../src/kernel/sockopt.js';
import { createLogger } from '../../src/log/logger.js';
import { ShieldProxy, type ShieldProxyOptions } from '../../src/shield/proxy.js';
import { runCmd, sleep, startProcess, waitFor } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { nginxArgv, nginxConfig } from '../helpers/nginx.js';

const ZERO_WINDOW_CLIENTS = fileURLToPath(new URL('./fixtures/shield-proxy-zero-window.py', import.meta.url));
const LEGIT = '127.0.0.5';

const skip = requirement(process.platform !== 'linux' ? 'the shield proxy needs Linux (TCP_INFO)' : missingPrograms(['slowhttptest', 'nginx', 'ss', 'python3', 'timeout']));

const noop = (): void => undefined;

interface Proxied {
  proxy: ShieldProxy;
  port: number;
  /** the proxy's log lines (JSON) */
  logs: string[];
}

/** Options with every defence off unless `o` turns it on; the log lines (JSON) go to `logs`. */
function proxyOptions(o: Partial<ShieldProxyOptions> & Pick<ShieldProxyOptions, 'backend'>, logs: string[] = []): ShieldProxyOptions {
  return {
    name: 'test',
    listen: { host: '127.0.0.1', port: 0 },
    firstByteTimeoutMs: 0,
    minRate: null,
    zeroWindowTimeoutMs: 0,
    perSourceConns: 1000,
    maxConns: 1000,
    isPreferred: () => false,
    proxyProtocol: false,
    logger: createLogger({ level: 'info', format: 'json', write: (line) => void logs.push(line) }),
    ...o,
  };
}

/** A ShieldProxy on 127.0.0.1:0 (proxyOptions), closed after the test. */
async function startProxy(t: TestContext, o: Partial<ShieldProxyOptions> & Pick<ShieldProxyOptions, 'backend'>): Promise<Proxied> {
  const logs: string[] = [];
  const proxy = new ShieldProxy(proxyOptions(o, logs));
  const { port } = await proxy.listen();
  t.after(() => proxy.close());
  return { proxy, port, logs };
}

/** Listens on host:0, closes the server and every socket it accepted after the test. */
async function serve(t: TestContext, server: net.Server, host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    s.on('error', noop);
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

/** A TCP echo server that ends its side when the client ends its own (half-close passes through). */
function echoBackend(t: TestContext): Promise<number> {
  return serve(t, net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)));
}

function connectFrom(localAddress: string, port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.closed ? resolve() : s.once('close', () => resolve())));
}

type Outcome = 'served' | 'closed' | 'timeout';

/** Writes `msg` and resolves 'served' when the echo comes back, 'closed' when the proxy closes first. */
function exchange(s: net.Socket, msg: string, timeoutMs = 3000): Promise<Outcome> {
  return new Promise((resolve) => {
    let got = '';
    const timer = setTimeout(() => resolve('timeout'), timeoutMs);
    s.on('error', noop);
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes(msg)) {
        clearTimeout(timer);
        resolve('served');
      }
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    if (!s.destroyed) s.write(msg);
  });
}

/**
 * Connects from `localAddress` and exchanges `msg` with the echo behind the proxy. A refused
 * connection may be reset before connect(2) reports back: that is 'closed' too.
 */
function attempt(localAddress: string, port: number, msg: string): Promise<{ s: net.Socket; outcome: Outcome }> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  s.on('error', noop);
  return exchange(s, msg).then((outcome) => ({ s, outcome }));
}

/** Reads a socket to its end (or close); resolves with everything and whether it ended cleanly. */
function readAll(s: net.Socket): Promise<{ data: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let ended = false;
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => (ended = true));
    s.on('error', noop);
    s.once('close', () => resolve({ data: Buffer.concat(parts), ended }));
  });
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** nearest-rank percentile of an ascending list */
function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface LegitResult {
  ok: number;
  attempts: number;
  p50: number;
  p99: number;
  failures: Record<string, number>;
}

/** `total` HTTP GETs from LEGIT, `concurrency` at a time, each a new connection, `pauseMs` between a worker's requests. */
async function legitClient(port: number, path: string, total: number, concurrency: number, pauseMs: number): Promise<LegitResult> {
  const times: number[] = [];
  const failures: Record<string, number> = {};
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const started = performance.now();
      const fail = (why: string): void => {
        failures[why] = (failures[why] ?? 0) + 1;
        resolve();
      };
      const req = http.get({ host: '127.0.0.1', port, path, localAddress: LEGIT, agent: false, timeout: 5000 }, (res) => {
        let n = 0;
        res.on('data', (d: Buffer) => (n += d.length));
        res.on('end', () => {
          if (res.statusCode === 200 && n === Number(res.headers['content-length'])) {
            times.push(performance.now() - started);
            resolve();
          } else fail(`status ${res.statusCode} ${n} bytes`);
        });
        res.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    });
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++;
      await one();
      if (pauseMs > 0) await sleep(pauseMs);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  times.sort((a, b) => a - b);
  return { ok: times.length, attempts: total, p50: Math.round(pct(times, 50) * 10) / 10, p99: Math.round(pct(times, 99) * 10) / 10, failures };
}

/** A small HTTP backend: / answers "ok", /big `bigBytes`; at most `maxConnections` at once, like a worker pool. */
async function httpBackend(t: TestContext, bigBytes: number, maxConnections: number): Promise<{ port: number; server: http.Server }> {
  const big = Buffer.alloc(bigBytes, 0x61);
  const server = http.createServer((req, res) => {
    const body = req.url === '/big' ? big : Buffer.from('ok\n');
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  server.maxConnections = maxConnections;
  return { port: await serve(t, server), server };
}

function logsWith(logs: string[], reason: string): Array<Record<string, unknown>> {
  return logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reason === reason);
}

/** Runs slowhttptest (bounded by timeout(1)) and returns its last report lines. */
async function slowhttptest(args: string[], boundS: number): Promise<string> {
  const p = startProcess(['timeout', '-s', 'KILL', String(boundS), 'slowhttptest', ...args]);
  try {
    await p.exited;
  } finally {
    await p.stop('SIGKILL', 1000);
  }
  const out = p.stdout().replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  return out;
}

describe('shield proxy', { skip }, () => {
  it('getTcpInfo reads what the kernel counted: state, bytes received and acknowledged, the send window', { timeout: 10_000 }, async (t) => {
    const sent = 100_000;
    let serverSide: net.Socket | undefined;
    const port = await serve(
      t,
      net.createServer((s) => {
        serverSide = s;
        s.write(Buffer.alloc(sent, 1));
      }),
    );
    const c = await connectFrom('127.0.0.1', port);
    let n = 0;
    c.on('data', (d: Buffer) => (n += d.length));
    await waitFor('the data', () => n === sent);
    await sleep(50);
    const mine = getTcpInfo(socketFd(c)!);
    const theirs = getTcpInfo(socketFd(serverSide!)!);
    assert.ok(mine && theirs);
    assert.equal(mine.state, 1, 'TCP_ESTABLISHED');
    assert.equal(mine.bytesReceived, sent);
    assert.ok(theirs.bytesAcked === sent || theirs.bytesAcked === sent + 1, `bytes_acked ${theirs.bytesAcked} (the SYN may count as one)`);
    assert.ok(theirs.sndWnd !== null && theirs.sndWnd > 0, `snd_wnd ${theirs.sndWnd}`);
    assert.ok(theirs.sndMss > 0 && theirs.rttUs > 0);
    assert.equal(getTcpInfo(-1), null, 'a bad fd is null, not a throw');
    c.destroy();
  });

  it('relays both ways: half-close, 20 MB intact each way, bounded buffering, one reset hurts no other connection', { timeout: 30_000 }, async (t) => {
    // half-close: the backend answers only after the client's FIN
    const halfClose = await serve(
      t,
      net.createServer({ allowHalfOpen: true }, (s) => {
        let n = 0;
        s.on('data', (d: Buffer) => (n += d.length));
        s.on('end', () => s.end(`got ${n} bytes after your FIN`));
      }),
    );
    const hc = await startProxy(t, { backend: { host: '127.0.0.1', port: halfClose }, firstByteTimeoutMs: 2000 });
    const c = await connectFrom('127.0.0.1', hc.port);
    const reply = readAll(c);
    c.end('hello');
    const r = await reply;
    assert.equal(r.data.toString(), 'got 5 bytes after your FIN');
    assert.ok(r.ended, 'the backend ended its side after answering');

    // 20 MB up and echoed back down, through backpressure on both sides
    const echo = await echoBackend(t);
    const ep = await startProxy(t, { backend: { host: '127.0.0.1', port: echo }, minRate: { bytesPerSecond: 1000, graceMs: 2000 }, zeroWindowTimeoutMs: 2000 });
    const payload = randomBytes(20 * 1024 * 1024);
    const started = performance.now();
    const e = await connectFrom('127.0.0.1', ep.port);
    const back = readAll(e);
    e.end(payload);
    const echoed = await back;
    const ms = performance.now() - started;
    assert.equal(echoed.data.length, payload.length);
    assert.equal(sha256(echoed.data), sha256(payload), 'sha256 of the echo equals the upload');
    const st = ep.proxy.stats();
    assert.equal(st.bytes.clientToBackend, payload.length);
    assert.equal(st.bytes.backendToClient, payload.length);
    process.stdout.write(`# 20 MB up and back through the proxy in ${Math.round(ms)} ms (${Math.round((2 * 20 * 1000) / ms)} MB/s both ways), sha256 equal\n`);

    // a client that stops reading: the proxy pauses the backend instead of buffering 20 MB
    const download = randomBytes(20 * 1024 * 1024);
    const firehose = await serve(
      t,
      net.createServer((s) => s.end(download)),
    );
    const fp = await startProxy(t, { backend: { host: '127.0.0.1', port: firehose } });
    const d = await connectFrom('127.0.0.1', fp.port);
    d.pause();
    await sleep(1000);
    const readWhilePaused = fp.proxy.stats().bytes.backendToClient;
    process.stdout.write(`# client not reading for 1 s: the proxy took ${(readWhilePaused / 1e6).toFixed(2)} MB of the backend's 20 MB\n`);
    assert.ok(readWhilePaused < 8 * 1024 * 1024, `the proxy read ${readWhilePaused} bytes for a client that reads nothing`);
    const got = readAll(d);
    d.resume();
    const all = await got;
    assert.equal(sha256(all.data), sha256(download), 'after resuming the client gets all 20 MB intact');

    // a reset on one connection leaves the others alone
    const a = await connectFrom('127.0.0.1', ep.port);
    const b = await connectFrom('127.0.0.1', ep.port);
    assert.equal(await exchange(a, 'a1'), 'served');
    assert.equal(await exchange(b, 'b1'), 'served');
    a.resetAndDestroy();
    await closed(a);
    await sleep(100);
    assert.equal(await exchange(b, 'b2'), 'served', 'the other connection still relays');
    b.destroy();
  });

  it('closes a client that sends nothing within firstByteTimeoutMs; with 0 the banner comes at once', { timeout: 20_000 }, async (t) => {
    const echo = await echoBackend(t);
    const p = await startProxy(t, { backend: { host: '127.0.0.1', port: echo }, firstByteTimeoutMs: 500 });
    const silent = await connectFrom('127.0.0.1', p.port);
    silent.on('error', noop);
    const t0 = performance.now();
    await closed(silent);
    const waited = performance.now() - t0;
    process.stdout.write(`# silent client closed after ${Math.round(waited)} ms (firstByteTimeoutMs 500)\n`);
    assert.ok(waited >= 450 && waited < 1500, `closed after ${waited} ms`);
    assert.equal(p.proxy.stats().closed.first_byte_timeout, 1);
    const line = logsWith(p.logs, 'first_byte_timeout');
    assert.equal(line.length, 1, 'one log line for the close');
    assert.match(String(line[0]?.source), /^127\.0\.0\.1:\d+$/);
    const talker = await connectFrom('127.0.0.1', p.port);
    assert.equal(await exchange(talker, 'hi'), 'served', 'a client that speaks is relayed');
    talker.destroy();

    // speaks-first (SMTP-like): the backend is dialled at once, the banner reaches a silent client
    const banner = await serve(
      t,
      net.createServer((s) => s.write('220 mail.example ESMTP\r\n')),
    );
    const sf = await startProxy(t, { backend: { host: '127.0.0.1', port: banner }, firstByteTimeoutMs: 0 });
    const t1 = performance.now();
    const client = await connectFrom('127.0.0.1', sf.port);
    const line1 = await new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())));
    const bannerMs = performance.now() - t1;
    process.stdout.write(`# speaks-first banner through the proxy after ${bannerMs.toFixed(1)} ms\n`);
    assert.equal(line1, '220 mail.example ESMTP\r\n');
    assert.ok(bannerMs < 500, `banner after ${bannerMs} ms`);
    client.destroy();
  });

  it('slowloris (slowhttptest -H) and slow read (slowhttptest -X): slow clients closed, the legit client served', { timeout: 70_000 }, async (t) => {
    const { port: backend, server } = await httpBackend(t, 1024 * 1024, 200);
    const backendConns = (): Promise<number> => new Promise((r) => server.getConnections((e, n) => r(e ? -1 : n)));

    // without the shield the attack is real: slowloris holds the backend's 200 connections
    const bare = slowhttptest(['-c', '500', '-H', '-i', '10', '-r', '200', '-t', 'GET', '-u', `http://127.0.0.1:${backend}/`, '-x', '24', '-p', '3', '-l', '6'], 20);
    await waitFor('slowloris to fill the unprotected backend', async () => (await backendConns()) >= 200, 10_000, 100);
    const unprotected = await legitClient(backend, '/', 50, 5, 0);
    await bare;
    process.stdout.write(`# slowloris without the shield: legit ${unprotected.ok}/${unprotected.attempts}, failures ${JSON.stringify(unprotected.failures)}\n`);
    assert.ok(unprotected.ok / unprotected.attempts < 0.5, `unprotected legit ${unprotected.ok}/${unprotected.attempts}: the attack did not hurt`);
    await waitFor('the attack\'s connections to go', async () => (await backendConns()) === 0, 10_000, 100);

    const p = await startProxy(t, {
      backend: { host: '127.0.0.1', port: backend },
      firstByteTimeoutMs: 3000,
      minRate: { bytesPerSecond: 200, graceMs: 2000 },
      zeroWindowTimeoutMs: 3000,
      perSourceConns: 100,
      maxConns: 400,
    });
    const url = `http://127.0.0.1:${p.port}`;

    const loris = slowhttptest(['-c', '500', '-H', '-i', '10', '-r', '200', '-t', 'GET', '-u', `${url}/`, '-x', '24', '-p', '3', '-l', '15'], 30);
    await waitFor('slowloris connections through the proxy', () => p.proxy.stats().active >= 50, 10_000);
    const legit = await legitClient(p.port, '/', 200, 10, 500);
    const lorisOut = await loris;
    const s1 = p.proxy.stats();
    process.stdout.write(`# slowloris: legit ${legit.ok}/${legit.attempts}, p50 ${legit.p50} ms, p99 ${legit.p99} ms, failures ${JSON.stringify(legit.failures)}; proxy closed ${JSON.stringify(s1.closed)}\n`);
    process.stdout.write(`# slowhttptest -H: ${lorisOut.trim().split('\n').slice(-3).join(' | ')}\n`);
    assert.ok(legit.ok / legit.attempts >= 0.999, `legit ${legit.ok}/${legit.attempts}`);
    assert.ok(s1.closed.slow_send > 0, 'slowloris connections were closed as slow_send');
    assert.ok(logsWith(p.logs, 'slow_send').length === s1.closed.slow_send, 'one log line per slow_send close');

    const slowRead = slowhttptest(['-X', '-c', '200', '-r', '100', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-u', `${url}/big`, '-p', '3', '-l', '12'], 30);
    await waitFor('slow readers through the proxy', () => p.proxy.stats().active >= 20, 10_000);
    const legit2 = await legitClient(p.port, '/big', 200, 10, 300);
    const slowOut = await slowRead;
    const s2 = p.proxy.stats();
    const readCloses = s2.closed.slow_read - s1.closed.slow_read + (s2.closed.zero_window - s1.closed.zero_window);
    process.stdout.write(`# slow read: legit ${legit2.ok}/${legit2.attempts} (1 MB each), p50 ${legit2.p50} ms, p99 ${legit2.p99} ms, failures ${JSON.stringify(legit2.failures)}; slow_read ${s2.closed.slow_read - s1.closed.slow_read}, zero_window ${s2.closed.zero_window - s1.closed.zero_window}\n`);
    process.stdout.write(`# slowhttptest -X: ${slowOut.trim().split('\n').slice(-3).join(' | ')}\n`);
    assert.ok(legit2.ok / legit2.attempts >= 0.999, `legit ${legit2.ok}/${legit2.attempts}`);
    assert.ok(readCloses > 0, 'slow readers were closed as slow_read or zero_window');
  });

  it('zero-window readers: 50 clients that never read an 8 MB answer are closed in time and the backend drains', { timeout: 30_000 }, async (t) => {
    const answer = Buffer.alloc(8 * 1024 * 1024, 0x62);
    const backendSockets = new Set<net.Socket>();
    const backend = await serve(
      t,
      net.createServer((s) => {
        backendSockets.add(s);
        s.once('close', () => backendSockets.delete(s));
        s.once('data', () => s.write(answer));
      }),
    );
    const timeoutMs = 1500;
    const p = await startProxy(t, { backend: { host: '127.0.0.1', port: backend }, zeroWindowTimeoutMs: timeoutMs, perSourceConns: 100 });
    const clients = startProcess(['python3', ZERO_WINDOW_CLIENTS, '127.0.0.4', '127.0.0.1', String(p.port), '50', '1024', '15']);
    t.after(() => clients.stop('SIGKILL', 1000));
    await clients.waitForOutput(/^open 50$/m, 10_000);
    await sleep(500);
    const sendQ = async (): Promise<{ sockets: number; bytes: number }> => {
      const r = await runCmd(['ss', '-tnH', 'state', 'all', `( sport = :${backend} )`]);
      const rows = r.stdout.split('\n').filter((l) => l.trim() !== '' && !/\bLISTEN\b/.test(l));
      // columns: State Recv-Q Send-Q Local Peer
      return { sockets: rows.length, bytes: rows.reduce((n, l) => n + Number(l.trim().split(/\s+/)[2] ?? 0), 0) };
    };
    const stalled = await sendQ();
    process.stdout.write(`# while stalled: ${stalled.sockets} backend sockets, Send-Q ${(stalled.bytes / 1e6).toFixed(1)} MB toward the proxy\n`);
    assert.ok(stalled.bytes > 10 * 1024 * 1024, 'the stalled answers fill the backend\'s send queues first');
    await clients.waitForOutput(/^done$/m, 15_000);
    const closes = [...clients.stdout().matchAll(/^closed (\d+) (\d+)$/gm)].map((m) => Number(m[2]));
    closes.sort((a, b) => a - b);
    process.stdout.write(`# zero window: ${closes.length}/50 closed, after ${closes[0]}..${closes[closes.length - 1]} ms (zeroWindowTimeoutMs ${timeoutMs})\n`);
    assert.equal(closes.length, 50, 'every zero-window client was closed');
    assert.ok(closes[closes.length - 1]! <= timeoutMs + 1500, `the last was closed after ${closes[closes.length - 1]} ms`);
    assert.equal(p.proxy.stats().closed.zero_window, 50);
    assert.equal(logsWith(p.logs, 'zero_window').length, 50, 'one log line per close');
    const drained = await waitFor('the backend send queues to drain', async () => {
      const q = await sendQ();
      return q.bytes < 64 * 1024 && backendSockets.size === 0 ? q : undefined;
    }, 5000, 100);
    process.stdout.write(`# afterwards: ${drained.sockets} backend sockets left, Send-Q ${drained.bytes} bytes\n`);
    assert.equal(p.proxy.stats().active, 0);
  });

  it('per-source limit: 127.0.0.2 gets exactly perSourceConns, 127.0.0.3 is still served', { timeout: 20_000 }, async (t) => {
    const echo = await echoBackend(t);
    const limit = 20;
    const p = await startProxy(t, { backend: { host: '127.0.0.1', port: echo }, perSourceConns: limit });
    const tries = await Promise.all(Array.from({ length: limit + 10 }, (_, i) => attempt('127.0.0.2', p.port, `hello ${i}`)));
    const socks = tries.map((r) => r.s);
    const results = tries.map((r) => r.outcome);
    const served = results.filter((r) => r === 'served').length;
    process.stdout.write(`# per-source limit ${limit}: ${served} of ${socks.length} served from 127.0.0.2\n`);
    assert.equal(served, limit);
    assert.equal(results.filter((r) => r === 'closed').length, 10);
    assert.equal(p.proxy.stats().closed.per_source_limit, 10);
    const { s: other, outcome } = await attempt('127.0.0.3', p.port, 'other');
    assert.equal(outcome, 'served', 'another source is served');
    for (const s of [...socks, other]) s.destroy();
  });

  it('the cap: a new source takes the place of the least useful connection of a source holding more than a quarter, a preferred source anyone\'s; suspects go first, then refused', { timeout: 20_000 }, async (t) => {
    const echo = await echoBackend(t);
    const p = await startProxy(t, { backend: { host: '127.0.0.1', port: echo }, maxConns: 10, isPreferred: (a) => a === '127.0.0.7' || a === '127.0.0.12' });
    const filler = await Promise.all(Array.from({ length: 10 }, () => connectFrom('127.0.0.6', p.port)));
    // all but one move some bytes; the idle one is the connection that is worth least
    const idle = 3;
    for (const [i, s] of filler.entries()) if (i !== idle) assert.equal(await exchange(s, `fill ${i}`), 'served');
    filler[idle]!.on('error', noop);
    await waitFor('10 connections', () => p.proxy.stats().active === 10);
    // 127.0.0.6 holds all 10: more than its quarter of the cap, it gives way to a new source
    const { s: newcomer8, outcome: newcomer8Outcome } = await attempt('127.0.0.8', p.port, 'let me in');
    assert.equal(newcomer8Outcome, 'served', 'a new source is served at the cap when one source holds more than a quarter of it');
    await waitFor('the idle connection to be the one evicted', () => filler[idle]!.destroyed, 2000);
    for (const [i, s] of filler.entries()) if (i !== idle) assert.equal(s.destroyed, false, `filler ${i} still open`);
    const { s: admin, outcome: adminOutcome } = await attempt('127.0.0.7', p.port, 'admin');
    assert.equal(adminOutcome, 'served', 'the preferred source is served at the cap');
    await waitFor('a second filler evicted', () => filler.filter((s) => s.destroyed).length === 2, 2000);
    const st = p.proxy.stats();
    assert.equal(st.closed.cap, 0);
    assert.equal(st.closed.evicted, 2);
    assert.equal(st.active, 10);
    for (const s of [...filler, newcomer8, admin]) s.destroy();
    await waitFor('all closed', () => p.proxy.stats().active === 0);

    // a source that misbehaved in the last minute is evicted first and refused first
    const q = await startProxy(t, { backend: { host: '127.0.0.1', port: echo }, maxConns: 6, firstByteTimeoutMs: 300, isPreferred: (a) => a === '127.0.0.12' });
    const mute = await connectFrom('127.0.0.10', q.port);
    mute.on('error', noop);
    await closed(mute); // first_byte_timeout: 127.0.0.10 is now suspect
    const suspect = await Promise.all([0, 1].map(() => connectFrom('127.0.0.10', q.port)));
    for (const s of suspect) assert.equal(await exchange(s, 'suspect'), 'served');
    // four well-behaved sources, one connection each: none holds more than its quarter of the cap
    const good = await Promise.all([11, 15, 16, 17].map((n) => connectFrom(`127.0.0.${n}`, q.port)));
    for (const s of good) assert.equal(await exchange(s, 'good'), 'served');
    assert.equal(q.proxy.stats().suspects, 1);
    const { s: vip, outcome: vipOutcome } = await attempt('127.0.0.12', q.port, 'vip');
    assert.equal(vipOutcome, 'served', 'the preferred source is served at the cap');
    await waitFor('one suspect connection evicted', () => suspect.filter((s) => s.destroyed).length === 1);
    assert.ok(good.every((s) => !s.destroyed), 'the well-behaved sources keep their connections');
    const { s: newcomer, outcome: newOutcome } = await attempt('127.0.0.13', q.port, 'new');
    assert.equal(newOutcome, 'served', 'a well-behaved newcomer takes a suspect connection');
    await waitFor('both suspect connections evicted', () => suspect.every((s) => s.destroyed));
    assert.equal((await attempt('127.0.0.14', q.port, 'late')).outcome, 'closed', 'no suspect left to evict: refused');
    assert.equal((await attempt('127.0.0.10', q.port, 'again')).outcome, 'closed', 'the suspect is refused');
    const qs = q.proxy.stats();
    process.stdout.write(`# cap: ${JSON.stringify(st.closed)}; with a suspect: ${JSON.stringify(qs.closed)}\n`);
    assert.equal(qs.closed.evicted, 2);
    assert.equal(qs.closed.cap, 2);
    for (const s of [...good, vip, newcomer]) s.destroy();
  });

  it('a transparent (IP_TRANSPARENT) listener relays; backend \'original\' never dials the proxy itself', { timeout: 10_000 }, async (t) => {
    const echo = await echoBackend(t);
    const tp = await startProxy(t, { listen: { host: '127.0.0.1', port: 0, transparent: true }, backend: { host: '127.0.0.1', port: echo } });
    assert.equal((await attempt('127.0.0.1', tp.port, 'through tproxy socket')).outcome, 'served');
    assert.throws(() => new ShieldProxy(proxyOptions({ backend: 'original' })), { code: 'invalid_options' });
    // not diverted by TPROXY, a client's original destination is the listener: dialling it would loop
    const orig = await startProxy(t, { listen: { host: '127.0.0.1', port: 0, transparent: true }, backend: 'original' });
    const r = await attempt('127.0.0.1', orig.port, 'loop?');
    assert.equal(r.outcome, 'closed');
    const st = orig.proxy.stats();
    assert.equal(st.closed.backend_error, 1);
    assert.equal(st.accepted, 1, 'one connection, no loop of the proxy dialling itself');
  });

  it('PROXY v2: nginx (listen ... proxy_protocol) sees the client address and port, over IPv4 and IPv6', { timeout: 30_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeward-shield-nginx-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const freePort = async (host: string): Promise<number> => {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, host, () => r()));
      const { port } = s.address() as net.AddressInfo;
      await new Promise<void>((r) => s.close(() => r()));
      return port;
    };
    const port4 = await freePort('127.0.0.1');
    const port6 = await freePort('::1');
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      nginxConfig(dir, {
        connections: 64,
        servers: `  server {
    listen 127.0.0.1:${port4} proxy_protocol;
    listen [::1]:${port6} proxy_protocol;
    location / { return 200 "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port\\n"; }
  }`,
      }),
    );
    const nginx = startProcess(nginxArgv(conf, dir));
    t.after(() => nginx.stop('SIGTERM', 3000));
    await waitFor('nginx listening', () => connectFrom('127.0.0.1', port4).then((s) => (s.destroy(), true), () => false), 5000, 100);

    const ask = async (port: number, host: string, local: string): Promise<{ body: string; localPort: number }> => {
      const s = await connectFrom(local, port, host);
      const localPort = s.localPort!;
      const all = readAll(s);
      s.write('GET / HTTP/1.0\r\nHost: test\r\n\r\n');
      const text = (await all).data.toString();
      return { body: text.slice(text.indexOf('\r\n\r\n') + 4).trim(), localPort };
    };
    const p4 = await startProxy(t, { backend: { host: '127.0.0.1', port: port4 }, proxyProtocol: true, firstByteTimeoutMs: 2000 });
    const v4 = await ask(p4.port, '127.0.0.1', '127.0.0.9');
    process.stdout.write(`# nginx saw (IPv4): ${v4.body}; client 127.0.0.9:${v4.localPort}\n`);
    assert.equal(v4.body, `127.0.0.9:${v4.localPort} 127.0.0.1:${p4.port}`);

    const p6 = await startProxy(t, { listen: { host: '::1', port: 0 }, backend: { host: '::1', port: port6 }, proxyProtocol: true });
    const v6 = await ask(p6.port, '::1', '::1');
    process.stdout.write(`# nginx saw (IPv6): ${v6.body}; client [::1]:${v6.localPort}\n`);
    assert.equal(v6.body, `::1:${v6.localPort} ::1:${p6.port}`);
  });
});
