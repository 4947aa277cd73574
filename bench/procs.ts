// Child processes of the bench: every one is tracked by pid, every wait is bounded, and all of them
// are stopped (by pid, never by name) when the bench ends, fails or is interrupted.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Most bytes of stdout / stderr kept per process; the rest is dropped (tools print little). */
const CAPTURE_LIMIT = 8 * 1024 * 1024;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Tracked {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** settles when the process has exited */
  readonly exited: Promise<ExitStatus>;
  /** undefined while running */
  status(): ExitStatus | undefined;
  stdout(): string;
  stderr(): string;
  /** SIGTERM by pid, SIGKILL after graceMs; resolves once it has exited. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

/** by pid: the process, and what its signals go to (its pid, or -pid for its whole process group) */
const live = new Map<number, { tracked: Tracked; target: number }>();

function capture(stream: NodeJS.ReadableStream | null): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream?.on('data', (b: Buffer) => {
    if (size >= CAPTURE_LIMIT) return;
    chunks.push(b);
    size += b.length;
  });
  return () => Buffer.concat(chunks).toString('utf8');
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Starts a process with piped output and tracks it until it exits. */
export function spawnTracked(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Tracked {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return adoptTracked(name, child);
}

/**
 * Tracks a process that something else started (Chromium, by puppeteer) like one of ours.
 * `group`: it leads a process group of its own (its helpers are in it), and signals go to the group.
 */
export function adoptTracked(name: string, child: ChildProcess, opts: { group?: boolean } = {}): Tracked {
  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('error', () => {
      status ??= { code: 127, signal: null };
      resolve(status);
    });
    child.once('exit', (code, signal) => {
      status ??= { code, signal };
      resolve(status);
    });
  });
  // a process adopted after it exited emits nothing more
  if (child.exitCode !== null || child.signalCode !== null) status = { code: child.exitCode, signal: child.signalCode };
  const stdout = capture(child.stdout);
  const stderr = capture(child.stderr);
  const pid = child.pid ?? -1;
  const target = opts.group === true && pid > 0 ? -pid : pid;
  const tracked: Tracked = {
    name,
    pid,
    child,
    exited: status ? Promise.resolve(status) : exited,
    status: () => status,
    stdout,
    stderr,
    async stop(graceMs = 3000) {
      if (status) return status;
      signalPid(target, 'SIGTERM');
      const done = await withTimeout(exited, graceMs);
      if (done) return done;
      signalPid(target, 'SIGKILL');
      return (await withTimeout(exited, 2000)) ?? { code: null, signal: 'SIGKILL' };
    },
  };
  if (pid > 0 && !status) {
    live.set(pid, { tracked, target });
    void exited.then(() => live.delete(pid));
  }
  return tracked;
}

/** pid, or -pgid for a process group */
function signalPid(pid: number, sig: NodeJS.Signals): void {
  if (pid === 0 || pid === -1) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** The value of `p`, or undefined when it has not settled within ms. */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a process to completion; stops it (by pid) when it runs longer than timeoutMs. */
export async function run(name: string, cmd: string, args: string[], timeoutMs: number, opts: SpawnOptions = {}): Promise<RunResult> {
  const p = spawnTracked(name, cmd, args, opts);
  let st = await withTimeout(p.exited, timeoutMs);
  const timedOut = st === undefined;
  if (st === undefined) st = await p.stop(1000);
  // let the pipes drain after exit
  await new Promise((r) => setImmediate(r));
  return { ...st, stdout: p.stdout(), stderr: p.stderr(), timedOut };
}

/**
 * Resolves with the first match of `pattern` in what the process wrote on `from` (stdout, or stderr
 * where edgeward logs), as soon as it is written (a latency measured up to it is not rounded to a
 * poll interval); undefined on exit or timeout.
 */
export function waitForOutput(p: Tracked, pattern: RegExp, timeoutMs: number, from: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpExecArray | undefined> {
  const stream = from === 'stdout' ? p.child.stdout : p.child.stderr;
  const text = from === 'stdout' ? p.stdout : p.stderr;
  return new Promise((resolve) => {
    // capture() sees each chunk first (it subscribed at spawn), so the text is there when this runs
    const check = (): void => {
      const m = pattern.exec(text());
      if (m) done(m);
    };
    const done = (m: RegExpExecArray | undefined): void => {
      clearTimeout(timer);
      stream?.off('data', check);
      resolve(m);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    stream?.on('data', check);
    void p.exited.then(() => setImmediate(() => (pattern.exec(text()) ? check() : done(undefined))));
    check();
  });
}

/** Stops every tracked process that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live.values()].map((p) => p.tracked.stop(3000)));
}

/** SIGKILLs (by pid) whatever is still tracked; for process exit, where nothing async runs. */
export function killAllNow(): void {
  for (const { target } of live.values()) signalPid(target, 'SIGKILL');
}

/** Absolute path of an executable on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface CpuTimes {
  user: number;
  sys: number;
}

/** CPU seconds (user and system, all threads, with its child processes) a process has used so far; undefined when gone. */
export function cpuTimes(pid: number, clockTicks: number): CpuTimes | undefined {
  const own = statTimes(pid);
  if (!own) return undefined;
  // a server that forks (Dante) does its work in child processes: those still running count, and
  // so do those it has waited for (cutime, cstime)
  let { user, sys } = own;
  for (const child of childPids(pid)) {
    const c = cpuTimes(child, 1);
    if (c) {
      user += c.user;
      sys += c.sys;
    }
  }
  return { user: user / clockTicks, sys: sys / clockTicks };
}

/** Resident memory of a process and its live child processes (Dante's), in bytes; undefined when gone. */
export function rssBytes(pid: number): number | undefined {
  let kib: number;
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!m) return undefined;
    kib = Number(m[1]);
  } catch {
    return undefined;
  }
  let total = kib * 1024;
  for (const child of childPids(pid)) total += rssBytes(child) ?? 0;
  return total;
}

/** utime + cutime and stime + cstime of one process, in clock ticks. */
function statTimes(pid: number): CpuTimes | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name is in parentheses and may contain spaces: fields restart after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) + Number(fields[13]), sys: Number(fields[12]) + Number(fields[14]) };
  } catch {
    return undefined;
  }
}

/** The live child processes of `pid` (of any of its threads). */
function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}

/** CPU seconds the whole machine has spent busy (all CPUs, everything but idle and iowait) so far, from /proc/stat. */
export function hostBusySeconds(clockTicks: number): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
    return busy / clockTicks;
  } catch {
    return undefined;
  }
}
