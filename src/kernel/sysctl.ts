// Reading and writing /proc/sys, and the one sysctl dance edgeward needs: upstream MPTCP has no
// per-socket option for the scheduler or the path manager, the kernel copies net.mptcp.scheduler and
// net.mptcp.path_manager into a new MPTCP socket when it is created, so edgeward sets them just
// around socket(2) and puts the previous values back. Those sysctls are global to the network
// namespace, so that set/create/restore must be exclusive across every thread of the process: it
// runs under a lock in a SharedArrayBuffer that all threads share (see mptcpSysctlLock).
import { EdgewardError } from '../core/errors.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { getEnvironmentData, isMainThread, setEnvironmentData } from 'node:worker_threads';
import { ThreadLock } from './thread-lock.js';

const PROC_SYS = '/proc/sys';

export type SysctlErrorCode = 'invalid_name' | 'not_found' | 'permission' | 'invalid_value' | 'write_failed';

/** A sysctl that could not be written; `code` is stable, `message` names the sysctl. */
export class SysctlError extends EdgewardError<SysctlErrorCode> {
  constructor(
    code: SysctlErrorCode,
    /** the sysctl, dotted (net.mptcp.path_manager) */
    readonly sysctl: string,
    message: string,
    /** the errno name of the failed write (EINVAL, EACCES, ...), when there was one */
    readonly errno?: string,
  ) {
    super(code, message);
  }
}

const NAME = /^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)*$/;

/** 'net.mptcp.enabled' or 'net/mptcp/enabled' -> the file under /proc/sys; null when it is no sysctl name. */
function sysctlPath(name: string): string | null {
  if (!NAME.test(name)) return null;
  // a name with a slash is a path already: it may hold dots (net/ipv4/conf/eth0.10/forwarding)
  return `${PROC_SYS}/${name.includes('/') ? name : name.replace(/\./g, '/')}`;
}

const dotted = (name: string): string => (name.includes('/') ? name.replace(/\//g, '.') : name);

/** The value of a sysctl in this network namespace (trimmed), or null when the kernel has no such sysctl. */
export function readSysctl(name: string): string | null {
  const path = sysctlPath(name);
  if (path === null) return null;
  try {
    return readFileSync(path, 'latin1').trim();
  } catch {
    return null;
  }
}

/** Sets a sysctl in this network namespace; throws a SysctlError saying why it could not. */
export function writeSysctl(name: string, value: string): void {
  const path = sysctlPath(name);
  if (path === null) throw new SysctlError('invalid_name', name, `"${name}" is not a sysctl name`);
  // procfs never creates a file: say "no such sysctl" whatever errno an unprivileged open would give
  if (!existsSync(path)) throw new SysctlError('not_found', dotted(name), `cannot write ${dotted(name)}: the kernel has no such sysctl`, 'ENOENT');
  try {
    writeFileSync(path, value);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code ?? String(e);
    const code: SysctlErrorCode = errno === 'ENOENT' ? 'not_found' : errno === 'EACCES' || errno === 'EPERM' ? 'permission' : errno === 'EINVAL' ? 'invalid_value' : 'write_failed';
    throw new SysctlError(code, dotted(name), `cannot write ${dotted(name)} (${errno})`, errno);
  }
}

// ---------------------------------------------------------------------------------------------
// The MPTCP sysctl lock

/** How long a thread waits for another thread's set/create/restore (which takes microseconds). */
export const MPTCP_SYSCTL_LOCK_TIMEOUT_MS = 500;
const ENVIRONMENT_KEY = 'edgeward.kernel.mptcpSysctlLock';

let lock: ThreadLock | undefined;

function currentLock(): ThreadLock {
  if (lock !== undefined) return lock;
  // a worker started after the main thread loaded this module inherits the main thread's buffer
  const inherited = isMainThread ? undefined : getEnvironmentData(ENVIRONMENT_KEY);
  if (inherited instanceof SharedArrayBuffer) {
    lock = new ThreadLock(inherited);
  } else {
    lock = ThreadLock.create();
    if (isMainThread) setEnvironmentData(ENVIRONMENT_KEY, lock.buffer);
  }
  return lock;
}

// Created as soon as the main thread loads the kernel module, so that workers spawned later find it
// in their environment data even when their pool does not pass it.
if (isMainThread) currentLock();

/**
 * The process-wide lock that makes the MPTCP sysctl swap exclusive across threads. Code that starts
 * worker threads which may open MPTCP sockets (the worker pool) must pass this buffer in workerData
 * and have each worker call useMptcpSysctlLock(buffer) before its first socket. (Workers spawned
 * after the main thread loaded this module also inherit it through worker environment data; the
 * explicit hand-over is the contract.)
 */
export function mptcpSysctlLock(): SharedArrayBuffer {
  return currentLock().buffer;
}

/** Makes this thread use `buffer` (the main thread's mptcpSysctlLock()) as its MPTCP sysctl lock. */
export function useMptcpSysctlLock(buffer: SharedArrayBuffer): void {
  if (lock?.buffer === buffer) return;
  lock = new ThreadLock(buffer);
}

/**
 * Runs `fn` while no other thread of this process is in its MPTCP sysctl section, so the sysctls a
 * new MPTCP socket copies are the ones its creator meant. `waited` is set when the lock could not be
 * had in time: `fn` then ran without it, and the value names the holder.
 */
export function underMptcpSysctlLock<T>(fn: () => T): { result: T; waited?: string } {
  const r = currentLock().run(MPTCP_SYSCTL_LOCK_TIMEOUT_MS, fn);
  if (r.acquired) return { result: r.result };
  return { result: fn(), waited: `thread ${r.holder} held the MPTCP sysctl lock for over ${MPTCP_SYSCTL_LOCK_TIMEOUT_MS} ms` };
}

/**
 * Runs `create` with net.mptcp.scheduler / net.mptcp.path_manager set as asked and restores the
 * previous values afterwards, all under the process-wide MPTCP sysctl lock, so no other thread's
 * socket is created in between and no other thread's restore undoes this one's set. Synchronous
 * (socket creation is), so nothing of this thread slips in either. Returns what could not be applied.
 */
export function withMptcpSysctls<T>(want: { scheduler?: string; pathManager?: string }, create: () => T): { result: T; notApplied: string[] } {
  const notApplied: string[] = [];
  const applied = currentLock().run(MPTCP_SYSCTL_LOCK_TIMEOUT_MS, () => swapAround(want, create, notApplied));
  if (applied.acquired) return { result: applied.result, notApplied };
  // Another thread is stuck inside its section (or was terminated there): rather than change the
  // sysctls under it, open the socket with whatever they hold now and say so.
  const why = `thread ${applied.holder} held the MPTCP sysctl lock for over ${MPTCP_SYSCTL_LOCK_TIMEOUT_MS} ms`;
  if (want.scheduler !== undefined) notApplied.push(`scheduler ${want.scheduler}: ${why}`);
  if (want.pathManager !== undefined) notApplied.push(`pathManager ${want.pathManager}: ${why}`);
  return { result: create(), notApplied };
}

function swapAround<T>(want: { scheduler?: string; pathManager?: string }, create: () => T, notApplied: string[]): T {
  const restore: Array<[string, string]> = [];
  const swap = (name: string, value: string | undefined, label: string): void => {
    if (value === undefined) return;
    const current = readSysctl(name);
    if (current === value) return;
    if (current === null) {
      notApplied.push(`${label} ${value}: kernel has no ${name}`);
      return;
    }
    try {
      writeSysctl(name, value);
      restore.push([name, current]);
    } catch (e) {
      notApplied.push(`${label} ${value}: cannot write ${name} (${e instanceof SysctlError ? e.errno ?? e.code : String(e)})`);
    }
  };
  swap('net.mptcp.scheduler', want.scheduler, 'scheduler');
  swap('net.mptcp.path_manager', want.pathManager, 'pathManager');
  try {
    return create();
  } finally {
    for (const [name, value] of restore) {
      try {
        writeSysctl(name, value);
      } catch {
        // the value was writable a moment ago; nothing better to do than keep going
      }
    }
  }
}
