// What the running kernel offers, read from /proc/sys: congestion controls, MPTCP, its schedulers
// and path managers. Read fresh on every call: modules can be loaded while edgeward runs.
import { readFileSync, writeFileSync } from 'node:fs';

const PROC = '/proc/sys/net';

function readProc(path: string): string | null {
  try {
    return readFileSync(`${PROC}/${path}`, 'latin1').trim();
  } catch {
    return null;
  }
}

function words(s: string | null): string[] {
  return s ? s.split(/\s+/).filter(Boolean) : [];
}

/** Congestion controls this kernel can use (tcp_available_congestion_control). */
export function availableCongestionControls(): string[] {
  return words(readProc('ipv4/tcp_available_congestion_control'));
}

/** The congestion control new sockets get (net.ipv4.tcp_congestion_control). */
export function defaultCongestionControl(): string | undefined {
  return readProc('ipv4/tcp_congestion_control') ?? undefined;
}

export interface MptcpCapabilities {
  /** the kernel has MPTCP and net.mptcp.enabled=1 in this network namespace */
  enabled: boolean;
  schedulers: string[];
  pathManagers: string[];
  scheduler: string | null;
  pathManager: string | null;
}

/** MPTCP support in this network namespace. */
export function mptcpCapabilities(): MptcpCapabilities {
  const enabled = readProc('mptcp/enabled');
  const schedulers = words(readProc('mptcp/available_schedulers'));
  let pathManagers = words(readProc('mptcp/available_path_managers'));
  let pathManager = readProc('mptcp/path_manager');
  if (pathManagers.length === 0 && enabled !== null) {
    // Kernels before 6.15 choose the path manager with pm_type: 0 = in-kernel, 1 = userspace.
    pathManagers = ['kernel', 'userspace'];
    const pmType = readProc('mptcp/pm_type');
    pathManager = pmType === '1' ? 'userspace' : 'kernel';
  }
  return {
    enabled: enabled === '1',
    schedulers: schedulers.length > 0 || enabled === null ? schedulers : ['default'],
    pathManagers: enabled === null ? [] : pathManagers,
    scheduler: readProc('mptcp/scheduler'),
    pathManager,
  };
}

/**
 * Runs `create` with net.mptcp.scheduler / net.mptcp.path_manager set as asked. Upstream MPTCP has
 * no per-socket option for either: the kernel copies both sysctls into a new MPTCP socket when it
 * is created, so edgeward sets them just around socket(2) (synchronous, so no other socket of this
 * process can slip in) and puts the previous values back. Returns what could not be applied.
 */
export function withMptcpSysctls<T>(want: { scheduler?: string; pathManager?: string }, create: () => T): { result: T; notApplied: string[] } {
  const restore: Array<[string, string]> = [];
  const notApplied: string[] = [];
  const swap = (file: string, value: string | undefined, label: string): void => {
    if (value === undefined) return;
    const current = readProc(`mptcp/${file}`);
    if (current === value) return;
    if (current === null) {
      notApplied.push(`${label} ${value}: kernel has no net.mptcp.${file}`);
      return;
    }
    try {
      writeFileSync(`${PROC}/mptcp/${file}`, value);
      restore.push([file, current]);
    } catch (e) {
      notApplied.push(`${label} ${value}: cannot write net.mptcp.${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  swap('scheduler', want.scheduler, 'scheduler');
  swap('path_manager', want.pathManager, 'pathManager');
  try {
    return { result: create(), notApplied };
  } finally {
    for (const [file, value] of restore) {
      try {
        writeFileSync(`${PROC}/mptcp/${file}`, value);
      } catch {
        // the value was writable a moment ago; nothing better to do than keep going
      }
    }
  }
}
