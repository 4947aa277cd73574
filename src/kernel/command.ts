// Running the kernel's command-line tools (nft, ip): execFile with a timeout and no shell, a result
// that never rejects, and nft/ip found in /usr/sbin and /sbin even when PATH lacks them (as it does
// for many non-root shells). Injected as a CommandRunner so tests can stand in for the tools.
import { execFile } from 'node:child_process';

export interface RunResult {
  /** exit status; null when it did not run to an exit (see `error`) */
  code: number | null;
  stdout: string;
  stderr: string;
  /** set when the command could not run or finish: an errno code (ENOENT, EACCES) or ETIMEDOUT */
  error?: string;
}

/** Runs argv (argv[0] looked up in PATH, then the sbin directories), with `input` on stdin. Never rejects. */
export type CommandRunner = (argv: readonly string[], input?: string) => Promise<RunResult>;

/** Where system tools live when PATH does not say. */
const SBIN = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** How long one nft or ip command may take by default. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 15_000;

function execOnce(file: string, args: readonly string[], input: string | undefined, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (e, stdout, stderr) => {
      if (!e) return resolve({ code: 0, stdout, stderr });
      const err = e as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
      if (typeof err.code === 'number') return resolve({ code: err.code, stdout, stderr });
      if (err.killed) return resolve({ code: null, stdout, stderr, error: 'ETIMEDOUT' });
      resolve({ code: null, stdout, stderr: stderr || err.message, error: typeof err.code === 'string' ? err.code : 'EFAIL' });
    });
    child.stdin?.on('error', () => {
      /* the command exited without reading its input: its exit status tells */
    });
    child.stdin?.end(input ?? '');
  });
}

/** A runner using child_process.execFile with a timeout; nft and ip are also found in /usr/sbin and /sbin when PATH lacks them. */
export function execRunner(timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): CommandRunner {
  return async (argv, input) => {
    const [file, ...args] = argv;
    if (file === undefined) return { code: null, stdout: '', stderr: 'empty command', error: 'EINVAL' };
    const first = await execOnce(file, args, input, timeoutMs);
    if (first.error !== 'ENOENT' || file.includes('/')) return first;
    for (const dir of SBIN) {
      const r = await execOnce(`${dir}/${file}`, args, input, timeoutMs);
      if (r.error !== 'ENOENT') return r;
    }
    return first;
  };
}

export const defaultRunner: CommandRunner = execRunner();

function shellWord(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** "ip -4 rule add ..." for messages and printed scripts: each word quoted for sh when it needs it. */
export function describeArgv(argv: readonly string[]): string {
  return argv.map(shellWord).join(' ');
}

/** What a failed command said, in one line (its first lines of stderr, else stdout, else its exit status). */
export function failureDetail(r: RunResult): string {
  return (r.stderr.trim() || r.stdout.trim() || `exit status ${String(r.code)}`).split('\n').slice(0, 6).join(' | ');
}

/** The command ran and exited 0. */
export function succeeded(r: RunResult): boolean {
  return r.code === 0 && r.error === undefined;
}

/** stderr says the kernel refused for want of privilege. */
export function deniedPermission(r: RunResult): boolean {
  return /Operation not permitted|Permission denied|EPERM/i.test(r.stderr);
}
