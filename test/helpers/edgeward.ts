// The real program under test, `node bin/edgeward.js start`, started two ways: on loopback ports
// the kernel picks, with its JSON log parsed for the addresses it listens on (startGateway), or inside
// a lab namespace on fixed addresses, ready once GET /health answers (startEdgeward). Each gets its
// own data directory and API token; stop() ends it (SIGTERM, then SIGKILL), and the test process's
// exit hook kills it if the test dies first.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lab, Netns } from './netns.js';
import { withResolvConf } from './peers.js';
import { appendBounded, HarnessError, killOnExit, onExit, ROOT, sleep, type ExecResult, type ProcessExit, type RunningProcess } from './process.js';

export const BIN = join(ROOT, 'bin', 'edgeward.js');

// the gateways' data directories, removed by stop() or, if the test process exits first, on exit
const dataDirs = new Set<string>();
onExit(() => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

export interface ApiResponse<T = unknown> {
  status: number;
  /** the parsed JSON body, or undefined when the body is not JSON */
  body: T;
  text: string;
}

// ---------------------------------------------------------------------------------------------
// On loopback

export interface LogLine {
  time: string;
  level: string;
  msg: string;
  [field: string]: unknown;
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
  /** RLIMIT_NOFILE of the process (util-linux prlimit): soft and hard */
  nofile?: number;
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
  readonly exited: Promise<ProcessExit>;
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
  if (opts.nofile !== undefined) argv = ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--', ...argv];
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
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
  let exit: ProcessExit | null = null;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.on('close', (code, signal) => {
      exit = { code, signal };
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
// Inside a lab namespace

export interface EdgewardInLab {
  process: RunningProcess;
  ns: Netns;
  /** host:port of the SOCKS5 listener inside the namespace */
  socks: string;
  /** its data directory */
  data: string;
  /** the API's address inside the namespace (http://HOST:PORT) */
  apiBase: string;
  /** the API token (EDGEWARD_API_TOKEN): for a sign-in to the console */
  token: string;
  /** Writes a curl config file (in the lab's temp dir) that sends the API token: for a client the test runs itself (`curl -K FILE`). */
  curlConfig(): string;
  /** Calls the REST API from inside the namespace (curl; the token goes through stdin, never argv). */
  api(method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<ApiResponse>;
  /** Runs `edgeward ARGS...` (a CLI client) inside the namespace against this gateway's API, as an operator would. */
  cli(args: string[]): Promise<ExecResult>;
  /** SIGTERM to edgeward's pid; SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<ProcessExit & { forced: boolean }>;
}

export interface StartEdgewardOptions {
  /** host:port for --socks; default 127.0.0.1:1080 */
  socks?: string;
  /** host:port for --api; default 127.0.0.1:8080 */
  api?: string;
  readyTimeoutMs?: number;
  /** more `edgeward start` flags */
  args?: string[];
  /** the program to run instead of this checkout's bin/edgeward.js (e.g. an installed build) */
  command?: string[];
  /** the data directory (default: a fresh one): a restart with the same one keeps users and devices */
  data?: string;
}

function curlConfigString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}"`;
}

/**
 * Starts `edgeward start` in `ns` (SOCKS on 127.0.0.1:1080, API on 127.0.0.1:8080, a fresh data
 * directory, a random API token) and waits until GET /health answers.
 */
export async function startEdgeward(lab: Lab, ns: Netns, opts: StartEdgewardOptions = {}): Promise<EdgewardInLab> {
  const socks = opts.socks ?? '127.0.0.1:1080';
  const apiAddr = opts.api ?? '127.0.0.1:8080';
  const token = randomBytes(24).toString('hex');
  const data = opts.data ?? lab.tempDir('data');
  const argv = [...(opts.command ?? [process.execPath, BIN]), 'start', '--socks', socks, '--api', apiAddr, '--data', data, ...(opts.args ?? [])];
  const proc = lab.spawn(ns, argv, { env: { EDGEWARD_API_TOKEN: token } });
  const base = `http://${apiAddr}`;

  const api: EdgewardInLab['api'] = async (method, path, body) => {
    const config = [`header = ${curlConfigString(`Authorization: Bearer ${token}`)}`];
    if (body !== undefined) {
      config.push(`header = "Content-Type: application/json"`);
      config.push(`data-binary = ${curlConfigString(JSON.stringify(body))}`);
    }
    const r = await lab.exec(ns, ['curl', '-sS', '--max-time', '5', '-K', '-', '-X', method, '-w', '\n%{http_code}', base + path], { input: config.join('\n') + '\n', timeoutMs: 10_000 });
    const nl = r.stdout.lastIndexOf('\n');
    const text = r.stdout.slice(0, nl);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: Number(r.stdout.slice(nl + 1)), text, body: parsed };
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  for (;;) {
    const r = await lab.exec(ns, ['curl', '-sS', '-f', '-o', '/dev/null', '--max-time', '1', `${base}/health`], { allowFailure: true, timeoutMs: 5000 });
    if (r.code === 0) break;
    if (!proc.running) throw new HarnessError('exec_failed', `edgeward exited (${JSON.stringify(proc.exitStatus)}) before /health answered; stderr:\n${proc.stderr().slice(-4000)}`);
    if (Date.now() > deadline) throw new HarnessError('wait_timeout', `edgeward /health did not answer within ${opts.readyTimeoutMs ?? 15_000} ms; stderr:\n${proc.stderr().slice(-4000)}`);
    await sleep(200);
  }
  const cli: EdgewardInLab['cli'] = (args) => lab.exec(ns, [process.execPath, BIN, ...args], { env: { EDGEWARD_API_TOKEN: token, EDGEWARD_API_URL: base }, allowFailure: true, timeoutMs: 20_000 });
  const curlConfig = (): string => {
    const file = join(lab.tempDir('curl'), 'api.conf');
    writeFileSync(file, `header = ${curlConfigString(`Authorization: Bearer ${token}`)}\n`, { mode: 0o600 });
    return file;
  };
  return { process: proc, ns, socks, data, apiBase: base, token, curlConfig, api, cli, stop: (graceMs = 5000) => proc.stop('SIGTERM', graceMs) };
}

/** Sets the default policy's transport through the API (PUT /api/v1/policies/default); throws on a non-2xx answer. */
export async function setDefaultTransport(ew: EdgewardInLab, transport: Record<string, unknown>): Promise<void> {
  const r = await ew.api('PUT', '/api/v1/policies/default', transport);
  if (r.status < 200 || r.status > 299) throw new HarnessError('exec_failed', `PUT /api/v1/policies/default ${JSON.stringify(transport)} answered ${r.status}: ${r.text.slice(0, 500)}`);
}
