// `npm run bench -- --congestion NAME`: the whole run with another TCP congestion control, without
// touching the machine's. net.ipv4.tcp_congestion_control is per network namespace, so the bench
// starts itself again in a private one (`unshare --net`, root), brings its loopback up and sets the
// name there; every process it starts (the proxies, iperf3, the C tools) inherits that namespace.
// The machine's setting and its traffic are left as they are. Not the labs: a namespace they
// create (ip netns add) starts with the machine's setting, not this one's (the kernel copies
// init_net's), so the lab, hybrid, paths and shield parts measure with the machine's.
//
// Why: on loopback the congestion control is a large part of what a single stream costs. Under
// bbr (this bench machine's setting) every sender paces with kernel timers, and that cost lands
// on all columns alike; under cubic (Linux's default) it does not (bench/README.md).
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/** set in the re-started bench: the congestion control it must set in its namespace */
const ENV_NAME = 'EDGEWARD_BENCH_CONGESTION';
/** ...and the machine's, for the notes */
const ENV_HOST = 'EDGEWARD_BENCH_HOST_CONGESTION';
const SYSCTL = '/proc/sys/net/ipv4/tcp_congestion_control';
const AVAILABLE = '/proc/sys/net/ipv4/tcp_available_congestion_control';

export interface CongestionInfo {
  /** net.ipv4.tcp_congestion_control in the namespace the bench measured in */
  name: string;
  /** the machine's own when the bench ran in a private namespace (--congestion), else undefined */
  machine?: string;
}

function readName(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

/** The congestion control this run measures with, and the machine's when it differs in kind. */
export function congestionInfo(): CongestionInfo {
  const machine = process.env[ENV_HOST];
  return machine === undefined ? { name: readName(SYSCTL) } : { name: readName(SYSCTL), machine };
}

/** The table's note: what the run measured with, and under --congestion which parts (`labParts`, run in namespaces of their own) kept the machine's. */
export function congestionNote(cc: CongestionInfo, labParts: readonly string[]): string {
  if (cc.machine === undefined) return `TCP congestion control: ${cc.name} (the machine's net.ipv4.tcp_congestion_control; --congestion NAME measures with another)`;
  const labs = labParts.length > 0 ? `; the labs' own namespaces start with the machine's: ${labParts.join(', ')} ran with ${cc.machine}` : '';
  return `TCP congestion control: ${cc.name} (--congestion: in a private network namespace; the machine's is ${cc.machine}${labs})`;
}

/** Checks a --congestion value against what the kernel offers; a clear error otherwise. */
export function checkCongestion(name: string): void {
  const offered = readName(AVAILABLE).split(/\s+/).filter(Boolean);
  if (!offered.includes(name)) {
    throw new Error(`--congestion: "${name}" is not one this kernel offers (${AVAILABLE}: ${offered.join(' ')}; modprobe tcp_${name} may add it)`);
  }
}

/** True in the bench started again by runInPrivateNamespace. */
export function inPrivateNamespace(): boolean {
  return process.env[ENV_NAME] !== undefined;
}

/**
 * In the re-started bench: loopback up and the congestion control set, in this (private) namespace.
 * Throws if either does not take.
 */
export function setUpPrivateNamespace(): void {
  const name = process.env[ENV_NAME]!;
  execFileSync('ip', ['link', 'set', 'lo', 'up'], { stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(SYSCTL, name);
  const now = readName(SYSCTL);
  if (now !== name) throw new Error(`${SYSCTL} is "${now}" after writing "${name}"`);
}

/**
 * Runs this bench again, with the same arguments, in a new network namespace set to `name`;
 * resolves with its exit code. Ctrl-C reaches both (same process group): the child stops what it
 * started and this one waits for it.
 */
export function runInPrivateNamespace(name: string): Promise<number> {
  const child = spawn('unshare', ['--net', '--', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, [ENV_NAME]: name, [ENV_HOST]: readName(SYSCTL) },
  });
  const ignore = (): void => undefined;
  const forward = (): void => {
    child.kill('SIGTERM');
  };
  process.on('SIGINT', ignore);
  process.on('SIGTERM', forward);
  return new Promise((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`bench: --congestion needs unshare (util-linux) and root: ${e.message}\n`);
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal === 'SIGINT' ? 130 : 1));
    });
  });
}
