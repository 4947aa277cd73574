// Running programs for the tests: a command to completion under a hard timeout with bounded output
// (runCmd resolves whatever the exit code; run rejects unless it is 0), a long-running program whose
// output tails are kept and whose stdout lines (and, on request, stdin) can carry a line protocol
// with the test (startProcess), and polling. Every process started here is killed by a
// synchronous exit / signal hook if the test process ends first (only those: by pid, or by the
// process group it leads), which also runs the cleanups other helpers register with onExit.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** How much of a command's stdout/stderr is kept. */
const OUTPUT_LIMIT = 1024 * 1024;
/** How much of a long-running process's stdout/stderr is kept (searched on every waitForOutput poll). */
const TAIL_LIMIT = 256 * 1024;

export type HarnessErrorCode = 'invalid' | 'destroyed' | 'exec_failed' | 'exec_timeout' | 'wait_timeout' | 'cleanup_failed';

/** A test-harness operation that failed; the message says which command and why. */
export class HarnessError extends Error {
  constructor(
    readonly code: HarnessErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HarnessError';
  }
}

/** argv as a shell would need it quoted, for messages. */
export function describeArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Appends to a bounded text buffer, keeping the tail (the end of a log is what explains a failure). */
export function appendBounded(buf: string, chunk: string, limit = OUTPUT_LIMIT): string {
  const s = buf + chunk;
  return s.length > limit ? s.slice(s.length - limit) : s;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every `intervalMs` until it returns a value other than undefined/false; rejects after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup when the test process ends first

/** Running children started here; true for those spawned detached (leaders of their own process group). */
const running = new Map<ChildProcess, boolean>();
const cleanups = new Set<() => void>();
let hooksInstalled = false;

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Signals the process group led by `child` (spawned detached), only while the leader is alive so the group id cannot have been reused. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || !alive(child)) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      process.kill(child.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** SIGKILLs a child: its whole process group when it leads one. */
function killChild(child: ChildProcess, group: boolean): void {
  if (group) signalGroup(child, 'SIGKILL');
  else if (alive(child)) child.kill('SIGKILL');
}

function cleanupAllSync(): void {
  for (const [child, group] of running) killChild(child, group);
  for (const cleanup of [...cleanups]) cleanup();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      // With no other handler left, re-raise so the default action (termination) happens.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Runs `cleanup` (synchronously) if the process exits or is signalled; the returned function unregisters it. */
export function onExit(cleanup: () => void): () => void {
  installHooks();
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Kills `child` (its process group when `group`) if the test process ends while it runs. */
export function killOnExit(child: ChildProcess, group = false): void {
  installHooks();
  running.set(child, group);
  const forget = (): void => void running.delete(child);
  child.once('exit', forget);
  child.once('error', forget);
}

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

interface ExecuteOptions {
  timeoutMs: number;
  /** written to stdin, which is then closed; undefined: stdin is /dev/null */
  input?: string | Buffer;
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** its own process group, killed as a whole on timeout */
  detached: boolean;
}

/** Runs argv (no shell) to completion; rejects only when it cannot be started. */
function execute(argv: readonly string[], opts: ExecuteOptions): Promise<CmdResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new HarnessError('invalid', 'empty command'));
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env, detached: opts.detached, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    killOnExit(child, opts.detached);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout = appendBounded(stdout, d)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = appendBounded(stderr, d)));
    const timer = setTimeout(() => {
      timedOut = true;
      killChild(child, opts.detached);
    }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new HarnessError('exec_failed', `cannot run ${describeArgv(argv)}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started });
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // the command may exit without reading its input
      child.stdin.end(opts.input);
    }
  });
}

export interface CmdOptions {
  /** SIGKILL after this long (default 20 s) */
  timeoutMs?: number;
  /** written to stdin, which is then closed */
  input?: string | Buffer;
  /** the whole environment (default: this process's) */
  env?: NodeJS.ProcessEnv;
  /** default: the repository's root */
  cwd?: string;
}

/** Runs argv (no shell) with a hard timeout; never rejects for a non-zero exit. */
export function runCmd(argv: readonly string[], opts: CmdOptions = {}): Promise<CmdResult> {
  return execute(argv, { timeoutMs: opts.timeoutMs ?? 20_000, input: opts.input ?? '', env: opts.env ?? process.env, cwd: opts.cwd ?? ROOT, detached: false });
}

export interface ExecOptions {
  /** kill the command (its whole process group) after this long; default 10 s */
  timeoutMs?: number;
  /** extra environment variables, on top of this process's environment */
  env?: Record<string, string>;
  /** written to the command's stdin (then closed) */
  input?: string;
  /** resolve with the result instead of rejecting when the exit code is not 0 */
  allowFailure?: boolean;
  cwd?: string;
}

export type ExecResult = CmdResult;

/** Runs argv to completion in its own process group; rejects on a timeout, and on a non-zero exit unless allowFailure. */
export async function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const r = await execute(argv, { timeoutMs, input: opts.input, env: { ...process.env, ...opts.env }, cwd: opts.cwd, detached: true });
  if (r.timedOut) throw new HarnessError('exec_timeout', `${describeArgv(argv)}: no exit after ${timeoutMs} ms; stderr: ${r.stderr.trim().slice(-2000)}`);
  if (r.code !== 0 && !opts.allowFailure) throw new HarnessError('exec_failed', `${describeArgv(argv)} exited with ${r.code ?? r.signal}: ${r.stderr.trim().slice(-2000)}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Long-running processes

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** extra environment variables, on top of this process's environment */
  env?: Record<string, string>;
  cwd?: string;
  /** 'pipe': stdin stays open for write() (a line protocol with the test); default /dev/null */
  stdin?: 'pipe';
}

/** A long-running program in its own process group; stdout/stderr tails are kept for diagnostics. */
export class RunningProcess {
  readonly pid: number;
  readonly exited: Promise<ProcessExit>;
  private out = '';
  private err = '';
  private exit: ProcessExit | null = null;
  private partialLine = '';
  private readonly lineListeners: Array<(line: string) => void> = [];

  constructor(
    readonly argv: readonly string[],
    private readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) throw new HarnessError('exec_failed', `cannot start ${describeArgv(argv)}`);
    this.pid = child.pid;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.out = appendBounded(this.out, d, TAIL_LIMIT);
      this.splitLines(d);
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.err = appendBounded(this.err, d, TAIL_LIMIT)));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      child.on('error', (e) => {
        this.err = appendBounded(this.err, `\nspawn error: ${e.message}\n`, TAIL_LIMIT);
        this.exit ??= { code: null, signal: null };
        resolve(this.exit);
      });
    });
  }

  get running(): boolean {
    return this.exit === null && alive(this.child);
  }

  /** The exit status, or null while running. */
  get exitStatus(): ProcessExit | null {
    return this.exit;
  }

  stdout(): string {
    return this.out;
  }

  /** Calls `fn` with each complete line the process writes on stdout from now on. */
  onStdoutLine(fn: (line: string) => void): void {
    this.lineListeners.push(fn);
  }

  private splitLines(chunk: string): void {
    if (!chunk.includes('\n')) {
      this.partialLine = appendBounded(this.partialLine, chunk, TAIL_LIMIT);
      return;
    }
    const lines = (this.partialLine + chunk).split('\n');
    this.partialLine = lines.pop() ?? '';
    for (const line of lines) for (const fn of this.lineListeners) fn(line);
  }

  /** Writes to the process's stdin (started with `stdin: 'pipe'`); false once the process is gone. */
  write(text: string): boolean {
    const stdin = this.child.stdin;
    if (!stdin) throw new HarnessError('invalid', `${describeArgv(this.argv)} was started without stdin: 'pipe'`);
    if (!this.running || stdin.destroyed) return false;
    stdin.write(text);
    return true;
  }

  stderr(): string {
    return this.err;
  }

  /** Resolves with the first match of `re` in stdout+stderr; rejects on timeout or exit. */
  async waitForOutput(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = (this.out + '\n' + this.err).match(re);
      if (m) return m;
      if (!this.running) throw new HarnessError('wait_timeout', `${describeArgv(this.argv)} exited (${JSON.stringify(this.exit)}) before printing ${re}; stderr: ${this.err.slice(-2000)}`);
      if (Date.now() > deadline) throw new HarnessError('wait_timeout', `${describeArgv(this.argv)} did not print ${re} within ${timeoutMs} ms; stderr: ${this.err.slice(-2000)}`);
      await sleep(50);
    }
  }

  /** Sends `signal` to the process, waits up to graceMs, then SIGKILLs its process group. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<ProcessExit & { forced: boolean }> {
    if (!this.running) return { ...(this.exit ?? { code: null, signal: null }), forced: false };
    try {
      process.kill(this.pid, signal);
    } catch {
      /* exited meanwhile */
    }
    const graceful = await Promise.race([this.exited, sleep(graceMs).then(() => null)]);
    if (graceful) return { ...graceful, forced: false };
    signalGroup(this.child, 'SIGKILL');
    const forced = await Promise.race([this.exited, sleep(3000).then(() => ({ code: null, signal: null }))]);
    return { ...forced, forced: true };
  }

  /** Synchronous last resort (process exit hook). */
  killSync(): void {
    signalGroup(this.child, 'SIGKILL');
  }
}

/** Starts argv in its own process group (so a stop reaches its children too); stdin is /dev/null unless `stdin: 'pipe'`. */
export function startProcess(argv: readonly string[], opts: SpawnOptions = {}): RunningProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new HarnessError('invalid', 'empty command');
  const child = spawn(file, args, { detached: true, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd });
  child.stdin?.on('error', () => undefined); // EPIPE when the process exits first: it shows in exitStatus
  killOnExit(child, true);
  return new RunningProcess(argv, child);
}
