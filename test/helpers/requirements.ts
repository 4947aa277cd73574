// What the tests need from this machine: programs, root, a kernel with network namespaces, MPTCP and
// tc tbf, and a built dist/. Each check answers with the reason a test cannot run here, or null;
// requirement() turns that reason into a skip, or under CI=true into a failure.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before } from 'node:test';
import { ROOT } from './process.js';

/** The programs each suite runs and their Debian packages (scripts/run-tests.mjs checks the same list before testing). */
const REQUIREMENTS = JSON.parse(readFileSync(join(ROOT, 'test', 'requirements.json'), 'utf8')) as { packages: Record<string, string> };

/**
 * The skip reason to give node:test (`{ skip }`, `t.skip()`) for a test that cannot run here, or
 * false. Under CI=true a missing tool or privilege must fail, never skip: then it returns false and
 * registers a `before` hook, in the suite being defined (or the file), that fails with the reason.
 */
export function requirement(reason: string | false | null | undefined): string | false {
  if (!reason) return false;
  if (process.env.CI !== 'true') return reason;
  before(() => assert.fail(`CI=true: a test that cannot run here fails instead of being skipped: ${reason}. On Debian, \`bash .ci/run\` (as root) installs what the tests use.`));
  return false;
}

let probeCache: string | null | undefined;

function hasProgram(name: string): boolean {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0;
}

/** Which of `names` are not on PATH, with the Debian packages that provide them; null when none is missing. */
export function missingPrograms(names: readonly string[]): string | null {
  const missing = names.filter((n) => !hasProgram(n));
  if (missing.length === 0) return null;
  const packages = [...new Set(missing.map((n) => REQUIREMENTS.packages[n] ?? n))];
  const what = missing.length === 1 ? `program "${missing[0]}" is` : `programs ${missing.map((n) => `"${n}"`).join(', ')} are`;
  return `${what} not installed (Debian: apt-get install -y ${packages.join(' ')})`;
}

/** Creates and removes a probe namespace with a tbf-shaped veth pair and reads MPTCP there. */
function probeKernel(): string | null {
  const ns = `ewprobe${process.pid}`;
  const ip = (args: string[]) => spawnSync('ip', args, { encoding: 'utf8', timeout: 5000 });
  const add = ip(['netns', 'add', ns]);
  if (add.status !== 0) return `\`ip netns add\` does not work here: ${(add.stderr || add.error?.message || '').trim()}`;
  try {
    const mptcp = spawnSync('ip', ['netns', 'exec', ns, 'cat', '/proc/sys/net/mptcp/enabled'], { encoding: 'utf8', timeout: 5000 });
    if (mptcp.status !== 0) return 'the kernel has no MPTCP (no /proc/sys/net/mptcp/enabled)';
    if (mptcp.stdout.trim() !== '1') return 'MPTCP is disabled in new network namespaces (net.mptcp.enabled=0)';
    const limits = ip(['-n', ns, 'mptcp', 'limits', 'set', 'subflows', '2', 'add_addr_accepted', '2']);
    if (limits.status !== 0) return `\`ip mptcp limits\` does not work: ${limits.stderr.trim()}`;
    const veth = ip(['-n', ns, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
    if (veth.status !== 0) return `cannot create veth pairs: ${veth.stderr.trim()}`;
    const tbf = spawnSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'probe0', 'root', 'tbf', 'rate', '50mbit', 'burst', '64kb', 'latency', '50ms'], { encoding: 'utf8', timeout: 5000 });
    if (tbf.status !== 0) return `tc tbf is unavailable: ${(tbf.stderr || tbf.error?.message || '').trim()}`;
    return null;
  } finally {
    ip(['netns', 'del', ns]);
  }
}

/**
 * Why lab tests cannot run here (not root, no `ip netns`, no MPTCP, no tc tbf, a missing program),
 * or null when they can. `needs` lists programs the caller runs (curl, mptcpize, python3, ...).
 */
export function labSkipReason(opts: { needs?: string[] } = {}): string | null {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces, veth, tc)';
  const missing = missingPrograms(['ip', 'tc', ...(opts.needs ?? [])]);
  if (missing) return missing;
  if (probeCache === undefined) probeCache = probeKernel();
  return probeCache;
}

/** What bin/edgeward.js loads: present once `npm run build` has run. */
const BUILT_ENTRY = join(ROOT, 'dist', 'cli', 'main.js');
const NOT_BUILT = 'edgeward is not built (no dist/cli/main.js): run `npm run build`, or `npm test`, which builds first';

/** Why the real program cannot be started (dist/ not built), or null. */
export function edgewardSkipReason(): string | null {
  return existsSync(BUILT_ENTRY) ? null : NOT_BUILT;
}

/** Fails unless dist/ is built: tests that run bin/edgeward.js call it first (npm test builds before testing). */
export function assertBuilt(): void {
  assert.ok(existsSync(BUILT_ENTRY), NOT_BUILT);
}
