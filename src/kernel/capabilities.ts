// What the running kernel offers, read from /proc/sys: congestion controls, MPTCP, its schedulers
// and path managers. Read fresh on every call: modules can be loaded while edgeward runs.
import { readSysctl } from './sysctl.js';

// withMptcpSysctls lives in sysctl.ts with the lock that guards it; importers of this module keep it
export { withMptcpSysctls } from './sysctl.js';

const readProc = (path: string): string | null => readSysctl(`net/${path}`);

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
