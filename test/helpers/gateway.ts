// The real program under test: `node bin/edgeward.js start` on loopback ports the kernel picks, with
// its own data directory; plus the small loopback peers the integration tests talk to through it
// (TCP echo, HTTP, UDP echo) and a bounded command runner for the real clients (curl, proxychains4).
// Every process started here is stopped by stop()/runCmd's timeout, and by a synchronous exit hook
// if the test process dies first; only those processes, by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'edgeward.js');

const OUTPUT_LIMIT = 1024 * 1024;

/** Keeps the tail of a growing text (the end of a log is what explains a failure). */
function appendBounded(buf: string, chunk: string): string {
  const s = buf + chunk;
  return s.length > OUTPUT_LIMIT ? s.slice(s.length - OUTPUT_LIMIT) : s;
}

// Processes this module started and that are still running, and the gateways' data directories:
// killed and removed if the test process exits first.
const live = new Set<ChildProcess>();
const dataDirs = new Set<string>();
process.once('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Commands

export interface CmdResult {
  /** exit code; null when the process was killed by a signal */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** true when the hard timeout killed it */
  timedOut: boolean;
  ms: number;
}

export interface CmdOptions {
  /** SIGKILL after this long (default 20 s) */
  timeoutMs?: number;
  /** written to stdin, which is then closed */
  input?: string | Buffer;
  /** the whole environment (default: this process's) */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs argv (no shell) with a hard timeout; never rejects for a non-zero exit. */
export function runCmd(argv: readonly string[], opts: CmdOptions = {}): Promise<CmdResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('runCmd: empty argv'));
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout = appendBounded(stdout, d.toString())));
    child.stderr.on('data', (d: Buffer) => (stderr = appendBounded(stderr, d.toString())));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 20_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new Error(`cannot run ${argv.join(' ')}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started });
    });
    child.stdin.on('error', () => undefined); // the command may exit without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

// ---------------------------------------------------------------------------------------------
// Polling

/** Polls `check` every `intervalMs` until it returns a value other than undefined/false; rejects after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// The gateway

export interface LogLine {
  time: string;
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
  text: string;
}

export interface GatewayOptions {
  /** flags after the listen addresses, data directory and log format */
  args?: string[];
  /** --socks value (default 127.0.0.1:0) */
  socks?: string;
  /** EDGEWARD_API_TOKEN; null = unset (the gateway generates DATA/api-token) */
  token?: string | null;
  /**
   * contents of /etc/resolv.conf as the gateway sees it: the process runs in a private mount
   * namespace (unshare -m, root) where that file is bind-mounted, so its name lookups stay on loopback
   */
  resolvConf?: string;
  /** how long to wait for the "listening" log line (default 20 s) */
  startTimeoutMs?: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Gateway {
  readonly pid: number;
  readonly dataDir: string;
  /** API token (null until known when the gateway generated it: read DATA/api-token) */
  token: string | null;
  readonly socksHost: string;
  readonly socksPort: number;
  readonly apiUrl: string;
  /** everything the process wrote on stderr (the JSON log) */
  stderr(): string;
  /** the JSON log lines so far */
  logs(): LogLine[];
  /** resolves with the first log line (already written or still to come) that satisfies `pred` */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** an API call with the bearer token; body sent as JSON */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>>;
  /** sends a signal to the process (only this one, by pid) */
  signal(sig: NodeJS.Signals): void;
  /** resolves when the process has exited */
  readonly exited: Promise<Exit>;
  /** SIGTERM, wait up to timeoutMs (default 15 s), then SIGKILL; returns the exit code; removes the data dir */
  stop(timeoutMs?: number): Promise<number | null>;
}

function parseLogLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (v && typeof v === 'object' && typeof (v as LogLine).msg === 'string') out.push(v as LogLine);
    } catch {
      // a partial line; complete on a later read
    }
  }
  return out;
}

/** "127.0.0.1:1080" or "[::1]:1080" -> host and port. */
function splitHostPort(text: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  if (!m) throw new Error(`not HOST:PORT: ${text}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Starts `edgeward start` and resolves once it logs "listening"; rejects (with its stderr) if it exits or hangs first. */
export async function startGateway(opts: GatewayOptions = {}): Promise<Gateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'edgeward-it-'));
  dataDirs.add(dataDir);
  const token = opts.token === undefined ? `it-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}` : opts.token;
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.EDGEWARD_API_TOKEN;
  if (token !== null) env.EDGEWARD_API_TOKEN = token;
  const startArgs = [BIN, 'start', '--socks', opts.socks ?? '127.0.0.1:0', '--api', '127.0.0.1:0', '--data', dataDir, '--log-format', 'json', ...(opts.args ?? [])];
  let argv: string[];
  if (opts.resolvConf !== undefined) {
    const resolvFile = join(dataDir, 'resolv.conf');
    writeFileSync(resolvFile, opts.resolvConf);
    argv = withResolvConf(resolvFile, [process.execPath, ...startArgs]);
  } else {
    argv = [process.execPath, ...startArgs];
  }
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stderr = '';
  let stdout = '';
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  child.stderr!.on('data', (d: Buffer) => {
    stderr = appendBounded(stderr, d.toString());
    wake();
  });
  child.stdout!.on('data', (d: Buffer) => (stdout = appendBounded(stdout, d.toString())));
  let exit: Exit | null = null;
  const exited = new Promise<Exit>((resolve) => {
    child.on('close', (code, signal) => {
      exit = { code, signal };
      live.delete(child);
      wake();
      resolve(exit);
    });
  });
  child.on('error', () => undefined); // surfaces as 'close'

  const logs = (): LogLine[] => parseLogLines(stderr);
  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = logs().find(pred);
        if (hit) {
          done();
          resolve(hit);
          return true;
        }
        if (exit) {
          done();
          reject(new Error(`edgeward exited (${exit.code ?? exit.signal}) before the expected log line; stderr:\n${stderr}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for a log line; stderr:\n${stderr}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      if (!check()) waiters.add(check);
    });

  let stopping: Promise<number | null> | null = null;
  const stop = (timeoutMs = 15_000): Promise<number | null> => {
    stopping ??= (async () => {
      if (!exit) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        await exited;
        clearTimeout(killer);
      }
      rmSync(dataDir, { recursive: true, force: true });
      dataDirs.delete(dataDir);
      return exit!.code;
    })();
    return stopping;
  };

  let listening: LogLine;
  try {
    listening = await waitForLog((l) => l.msg === 'listening', opts.startTimeoutMs ?? 20_000);
  } catch (e) {
    await stop(2000);
    throw new Error(`edgeward did not start (${argv.join(' ')}): ${(e as Error).message}${stdout ? `\nstdout:\n${stdout}` : ''}`);
  }
  const socks = splitHostPort(String(listening.socks));
  const apiUrl = String(listening.api);

  const gw: Gateway = {
    pid: child.pid!,
    dataDir,
    token,
    socksHost: socks.host,
    socksPort: socks.port,
    apiUrl,
    stderr: () => stderr,
    logs,
    waitForLog,
    async api<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
      const headers: Record<string, string> = {};
      if (gw.token !== null) headers.authorization = `Bearer ${gw.token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(apiUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      let parsed: unknown = undefined;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: res.status, body: parsed as T, text };
    },
    signal: (sig) => {
      if (!exit) child.kill(sig);
    },
    exited,
    stop,
  };
  return gw;
}

// ---------------------------------------------------------------------------------------------
// Loopback peers

export interface TcpPeer {
  server: net.Server;
  host: string;
  port: number;
  /** sockets accepted so far */
  accepted: net.Socket[];
  /** stops listening and destroys every accepted socket */
  close(): Promise<void>;
}

function trackClose(server: net.Server, host: string, accepted: net.Socket[]): TcpPeer {
  return {
    server,
    host,
    port: (server.address() as net.AddressInfo).port,
    accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of accepted) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts a TCP server on host:0 running `onConnection` for each client (allowHalfOpen). */
export async function startTcpServer(onConnection: (s: net.Socket) => void, host = '127.0.0.1'): Promise<TcpPeer> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return trackClose(server, host, accepted);
}

/** A TCP echo server on host:0: echoes every byte, and ends when the client ends. */
export function startEchoServer(host = '127.0.0.1'): Promise<TcpPeer> {
  return startTcpServer((s) => s.pipe(s), host);
}

export interface HttpPeer extends TcpPeer {
  /** requests served: method, url and Host header */
  requests: Array<{ method: string; url: string; host: string | undefined }>;
}

/** An HTTP server on host:0 answering every request with `body` (text/plain). */
export async function startHttpServer(body: string, host = '127.0.0.1'): Promise<HttpPeer> {
  const requests: HttpPeer['requests'] = [];
  const accepted: net.Socket[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host });
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.on('connection', (s) => accepted.push(s));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return { ...trackClose(server, host, accepted), requests };
}

export interface UdpPeer {
  socket: dgram.Socket;
  host: string;
  port: number;
  /** datagrams received: sender and payload */
  received: Array<{ address: string; port: number; data: Buffer }>;
  close(): Promise<void>;
}

/** A UDP echo server on host:0: sends every datagram back to its sender. */
export async function startUdpEchoServer(host = '127.0.0.1'): Promise<UdpPeer> {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const received: UdpPeer['received'] = [];
  socket.on('message', (msg, rinfo) => {
    received.push({ address: rinfo.address, port: rinfo.port, data: msg });
    socket.send(msg, rinfo.port, rinfo.address);
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => {
      socket.removeListener('error', reject);
      resolve();
    });
  });
  return { socket, host, port: socket.address().port, received, close: () => new Promise((r) => socket.close(() => r())) };
}

/** A TCP port on host that nothing listens on (bound, then released). */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// Socket reading

/**
 * Buffers everything a socket receives, so a test can read exact byte counts or wait for the end.
 * `ended` becomes true on the peer's FIN or on close (reset, destroy).
 */
export class SocketReader {
  private buf: Buffer = Buffer.alloc(0);
  private wakers = new Set<() => void>();
  ended = false;
  /** the socket error, if any (e.g. ECONNRESET) */
  error: Error | null = null;
  /** total bytes received */
  total = 0;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.total += d.length;
      this.wake();
    });
    socket.on('end', () => this.finish());
    socket.on('close', () => this.finish());
    socket.on('error', (e) => {
      this.error = e;
      this.finish();
    });
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  private wait(done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.wakers.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.wakers.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms: ${what()}`));
      }, timeoutMs);
      this.wakers.add(check);
      check();
    });
  }

  /** The next n bytes; rejects when the stream ends first or after timeoutMs. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    await this.wait(() => this.buf.length >= n || this.ended, timeoutMs, () => `${this.buf.length} of ${n} bytes received (${this.buf.subarray(0, 64).toString('hex')})`);
    if (this.buf.length < n) throw new Error(`stream ended after ${this.buf.length} of ${n} bytes (${this.buf.subarray(0, 64).toString('hex')})`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Everything until the peer ends (FIN or close); `ended` false when timeoutMs passed first. */
  async untilEnd(timeoutMs = 5000): Promise<{ data: Buffer; ended: boolean; ms: number }> {
    const started = Date.now();
    let ended = true;
    try {
      await this.wait(() => this.ended, timeoutMs, () => 'end');
    } catch {
      ended = false;
    }
    const data = this.buf;
    this.buf = Buffer.alloc(0);
    return { data, ended, ms: Date.now() - started };
  }
}

/** Connects a plain TCP client (allowHalfOpen) to host:port. */
export function tcpConnect(host: string, port: number, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeListener('error', onError);
      s.on('error', () => undefined);
      resolve(s);
    });
    const onError = (e: Error): void => {
      clearTimeout(timer);
      reject(e);
    };
    s.once('error', onError);
  });
}

// ---------------------------------------------------------------------------------------------
// DNS

export interface TestDns {
  /** the loopback address it answers on (port 53), for a resolv.conf "nameserver" line */
  address: string;
  /** names asked for (lower-cased, no trailing dot) with the query type: "A name", "AAAA name", ... */
  queries: string[];
  close(): Promise<void>;
}

/** Reads the QNAME at offset 12 of a DNS message and the QTYPE after it; null when malformed. */
function question(msg: Buffer): { name: string; type: number; end: number } | null {
  let p = 12;
  const labels: string[] = [];
  for (let hops = 0; hops < 128; hops++) {
    const len = msg[p];
    if (len === undefined || len > 63) return null;
    if (len === 0) return p + 5 <= msg.length ? { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(p + 1), end: p + 5 } : null;
    labels.push(msg.toString('latin1', p + 1, p + 1 + len));
    p += 1 + len;
  }
  return null;
}

const QTYPE_NAMES: Record<number, string> = { 1: 'A', 28: 'AAAA' };

/**
 * A DNS server (UDP) on 127.53.0.N:53 that knows only `records` (name -> IPv4 address, type A) and
 * answers NXDOMAIN for every other name. A process whose /etc/resolv.conf names it (see
 * `withResolvConf`) resolves those names and no others, and no query ever leaves loopback.
 */
export async function startTestDns(records: Record<string, string> = {}): Promise<TestDns> {
  const queries: string[] = [];
  const known = new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]));
  for (let n = 1; n <= 40; n++) {
    const address = `127.53.0.${n}`;
    const socket = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(53, address, () => {
          socket.removeListener('error', reject);
          resolve();
        });
      });
    } catch {
      socket.close();
      continue;
    }
    socket.on('error', () => undefined);
    socket.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      const q = question(msg);
      if (!q) return;
      queries.push(`${QTYPE_NAMES[q.type] ?? q.type} ${q.name}`);
      const ip = known.get(q.name);
      const answer = ip !== undefined && q.type === 1;
      const header = Buffer.alloc(12);
      msg.copy(header, 0, 0, 2); // ID
      header[2] = 0x80 | (msg[2]! & 0x79); // QR, the query's opcode and RD
      header[3] = 0x80 | (ip === undefined ? 3 : 0); // RA; NXDOMAIN for unknown names, else NOERROR (no data for AAAA)
      header.writeUInt16BE(1, 4); // QDCOUNT
      header.writeUInt16BE(answer ? 1 : 0, 6); // ANCOUNT
      const parts = [header, msg.subarray(12, q.end)];
      if (answer) {
        const rr = Buffer.alloc(16);
        rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
        rr.writeUInt16BE(1, 2); // type A
        rr.writeUInt16BE(1, 4); // class IN
        rr.writeUInt32BE(5, 6); // TTL
        rr.writeUInt16BE(4, 10);
        ip.split('.').forEach((b, i) => (rr[12 + i] = Number(b)));
        parts.push(rr);
      }
      socket.send(Buffer.concat(parts), rinfo.port, rinfo.address);
    });
    return { address, queries, close: () => new Promise((r) => socket.close(() => r())) };
  }
  throw new Error('no free 127.53.0.N:53 for the test DNS server');
}

/**
 * argv that runs `argv` in a private mount namespace (unshare -m, needs root) where `resolvFile` is
 * bind-mounted over /etc/resolv.conf. No fork: the pid of the spawned process ends up being argv's own.
 */
export function withResolvConf(resolvFile: string, argv: readonly string[]): string[] {
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" /etc/resolv.conf || exit 97; shift; exec "$@"', 'sh', resolvFile, ...argv];
}
