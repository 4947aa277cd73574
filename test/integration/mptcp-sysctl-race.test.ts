// The MPTCP path manager is chosen by setting net.mptcp.path_manager around socket(2). With several
// worker threads (the gateway runs SOCKS in N of them) one thread's set and restore must not
// interleave with another's: otherwise a socket gets another policy's path manager, or the global
// sysctl stays changed for good. Four threads with different path managers open real MPTCP sockets
// in a loop, inside a network namespace of this test's own (the sysctls are per namespace, so the
// host's value is never touched).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('./fixtures/mptcp-sysctl-race.mjs', import.meta.url));
const THREADS = 4;
const ITERATIONS = 3000;

interface ThreadResult {
  want: string;
  iterations: number;
  /** iterations in which the sysctl read inside the critical section was not this thread's value */
  wrong: number;
  notApplied: number;
  mptcp: number;
  seen: Record<string, number>;
}

interface RaceResult {
  original: string;
  after: string;
  threads: ThreadResult[];
}

const have = (argv: string[]): boolean => spawnSync(argv[0]!, argv.slice(1)).status === 0;
const hostPm = (): string | null => {
  try {
    return readFileSync('/proc/sys/net/mptcp/path_manager', 'latin1').trim();
  } catch {
    return null;
  }
};
const available = (() => {
  try {
    return readFileSync('/proc/sys/net/mptcp/available_path_managers', 'latin1').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
})();

const missing =
  process.getuid?.() !== 0 ? 'needs root (ip netns add)'
  : !have(['ip', '-V']) ? 'ip (iproute2) is not installed'
  : hostPm() === null ? 'the kernel has no net.mptcp.path_manager (MPTCP missing or older than 6.15)'
  : available.length < 2 ? `the kernel offers fewer than two MPTCP path managers (${available.join(' ') || 'none'})`
  : false;
// in CI a missing privilege or tool is a failure, not a skip
const ci = process.env.CI === 'true';
if (missing && !ci) process.stdout.write(`# skipping the MPTCP sysctl race test: ${missing}\n`);

describe('MPTCP path manager across worker threads', { skip: missing && !ci ? missing : false }, () => {
  const ns = `ew-mpr-${process.pid}`;
  let created = false;
  const cleanup = (): void => {
    if (created) spawnSync('ip', ['netns', 'del', ns]);
    created = false;
  };
  process.once('exit', cleanup);

  before(() => {
    if (missing) return;
    const r = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
    assert.equal(r.status, 0, `ip netns add ${ns}: ${r.stderr}`);
    created = true;
  });

  after(() => {
    cleanup();
    assert.ok(!spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').some((l) => l.split(' ')[0] === ns), `namespace ${ns} left behind`);
  });

  async function race(t: TestContext, share: 'workerData' | 'none'): Promise<void> {
    assert.equal(missing, false, `CI=true and this test cannot run: ${String(missing)}`);
    const host = hostPm();
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, FIXTURE, String(THREADS), String(ITERATIONS), share, ...available.slice(0, 2)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
    assert.equal(run.code, 0, run.stderr);
    const r = JSON.parse(run.stdout.trim().split('\n').pop()!) as RaceResult;
    const wrong = r.threads.reduce((n, x) => n + x.wrong, 0);
    for (const x of r.threads) t.diagnostic(`wants ${x.want}: ${x.wrong}/${x.iterations} saw another value (${JSON.stringify(x.seen)}), ${x.mptcp} MPTCP sockets, ${x.notApplied} not applied`);
    t.diagnostic(`path_manager before ${r.original}, after ${r.after}; ${wrong} of ${THREADS * ITERATIONS} iterations saw another thread's value`);
    assert.equal(hostPm(), host, "the host's net.mptcp.path_manager changed");
    for (const x of r.threads) assert.equal(x.mptcp, x.iterations, `thread wanting ${x.want}: not every socket was MPTCP`);
    assert.equal(r.after, r.original, 'net.mptcp.path_manager did not end with its original value');
    for (const x of r.threads) {
      assert.equal(x.notApplied, 0, `thread wanting ${x.want}: path manager not applied`);
      assert.equal(x.wrong, 0, `thread wanting ${x.want} saw another value inside its critical section ${x.wrong} times: ${JSON.stringify(x.seen)}`);
    }
  }

  it(`${THREADS} threads x ${ITERATIONS} sockets: each sees its own path manager, and the sysctl ends as it began`, { timeout: 120_000 }, (t) => race(t, 'workerData'));

  it('the same when the workers are not handed the lock: they inherit the main thread\'s', { timeout: 120_000 }, (t) => race(t, 'none'));
});
