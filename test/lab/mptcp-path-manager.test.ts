// edgeward's own MPTCP path manager (issue 12) against the real kernel, in a namespace of its own
// with only `lo`: an MPTCP file server (mptcpize), curl through edgeward's SOCKS5 listener. The
// record's subflow list must match what the kernel says (MPTCP_INFO, `ss -M`), a policy change must
// reach the open connection, and the MPTCP connections edgeward did not open (the kernel's path
// manager's, another program's userspace one) must keep their subflows as they were.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab, type Netns } from '../helpers/netns.js';
import { sleep, type RunningProcess } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const skip = requirement(labSkipReason({ needs: ['curl', 'mptcpize', 'python3', 'ss'] }) ?? edgewardSkipReason());
if (skip) console.log(`MPTCP path manager lab test skipped: ${skip}`);

interface PathManagerView {
  mode: string;
  subflowsWanted: number;
  subflowsUp: number;
  subflowsPending: number;
  subflows: Array<{ local: { address: string; port: number }; remote: { address: string; port: number }; backup: boolean }>;
  recreated: number;
  lastError?: string;
}

interface ConnectionView {
  id: number;
  destination: { address: string; port: number };
  inEffect: { mptcp: boolean; subflows?: number; pathManager?: PathManagerView } | null;
}

const PORT = 8000;

/** `ss -M` in the namespace: every MPTCP connection toward the file server, by local port, with its extra subflows. */
async function mptcpToServer(lab: Lab, ns: Netns): Promise<Map<number, number>> {
  const r = await lab.exec(ns, ['ss', '-Mni', 'state', 'established']);
  const out = new Map<number, number>();
  const lines = r.stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /\s127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)\b/.exec(lines[i]!);
    if (!m || Number(m[2]) !== PORT) continue;
    const extra = /subflows:(\d+)/.exec(lines[i + 1] ?? '');
    out.set(Number(m[1]), extra ? Number(extra[1]) : 0);
  }
  return out;
}

describe("edgeward's MPTCP path manager on the kernel's userspace path manager", { skip }, () => {
  const lab = new Lab();
  let ns: Netns;
  let file: FileServer;
  let ew: EdgewardInLab;
  const running: RunningProcess[] = [];

  /** A slow download through edgeward (it stays open while the test looks at it). */
  function slowDownload(opts: { socks?: boolean; mptcpize?: boolean } = {}): RunningProcess {
    const curl = ['curl', '-sS', '-o', '/dev/null', '--limit-rate', '2M', '--max-time', '60'];
    if (opts.socks) curl.push('--socks5', ew.socks);
    curl.push(file.url);
    const p = lab.spawn(ns, opts.mptcpize ? ['mptcpize', 'run', ...curl] : curl);
    running.push(p);
    return p;
  }

  async function connections(): Promise<ConnectionView[]> {
    const r = await ew.api('GET', '/api/v1/connections');
    assert.equal(r.status, 200, r.text);
    return (r.body as { connections: ConnectionView[] }).connections;
  }

  /** Polls the one connection to the file server until `ok` holds for it (at most `ms`); returns it. */
  async function waitFor(ok: (c: ConnectionView) => boolean, what: string, ms = 8000): Promise<ConnectionView> {
    const deadline = Date.now() + ms;
    let last: ConnectionView | undefined;
    for (;;) {
      last = (await connections()).find((c) => c.destination.port === PORT);
      if (last && ok(last)) return last;
      if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms; last record: ${JSON.stringify(last)}`);
      await sleep(200);
    }
  }

  before(async () => {
    ns = await lab.addNamespace('pm');
    // the server side accepts up to 8 subflows per connection; no endpoint: the kernel's path manager adds none
    await lab.mptcpLimits(ns, { subflows: 8, addAddrAccepted: 8 });
    file = await startFileServer(lab, ns, { addr: '127.0.0.1', port: PORT, sizeMiB: 64 });
    ew = await startEdgeward(lab, ns);
  }, { timeout: 40_000 });

  after(async () => {
    try {
      for (const p of running) if (p.running) await p.stop('SIGTERM', 2000);
      if (ew?.process.running) await ew.stop();
    } finally {
      await lab.destroy();
    }
  });

  test('ndiffports: 4 subflows over the same addresses, the record and the kernel agree; a change reaches the open connection', { timeout: 60_000 }, async () => {
    const created = await ew.api('POST', '/api/v1/policies', { match: { cidr: '127.0.0.0/8', port: PORT }, transport: { mptcp: true, pathManager: 'ndiffports', subflows: 4 } });
    assert.equal(created.status, 201, created.text);
    const id = (created.body as { id: number }).id;
    const dl = slowDownload({ socks: true });
    try {
      const c = await waitFor((x) => x.inEffect?.pathManager?.subflowsUp === 4, 'the record shows 4 subflows up');
      const pm = c.inEffect!.pathManager!;
      console.log(`ndiffports 4: ${JSON.stringify({ up: pm.subflowsUp, kernel: c.inEffect!.subflows, ports: pm.subflows.map((s) => s.local.port) })}`);
      assert.equal(pm.mode, 'ndiffports');
      assert.equal(pm.subflowsWanted, 4);
      assert.equal(c.inEffect!.subflows, 4, 'MPTCP_INFO counts 4 subflows');
      assert.equal(new Set(pm.subflows.map((s) => s.local.address)).size, 1, 'one local address');
      assert.equal(new Set(pm.subflows.map((s) => s.local.port)).size, 4, 'four source ports');
      assert.ok(pm.subflows.every((s) => s.remote.address === '127.0.0.1' && s.remote.port === PORT));
      const firstPort = pm.subflows[0]!.local.port;
      const ss = await mptcpToServer(lab, ns);
      assert.equal(ss.get(firstPort), 3, `ss -M: the connection from port ${firstPort} has 3 subflows besides the first (${JSON.stringify([...ss])})`);

      const more = await ew.api('PATCH', `/api/v1/policies/${id}`, { transport: { subflows: 6 } });
      assert.equal(more.status, 200, more.text);
      assert.equal((more.body as { liveUpdate: { connectionsUpdated: number } }).liveUpdate.connectionsUpdated, 1);
      const six = await waitFor((x) => x.inEffect?.subflows === 6, 'the open connection gets 6 subflows after the change');
      assert.equal(six.inEffect!.pathManager!.subflowsUp, 6);

      const fewer = await ew.api('PATCH', `/api/v1/policies/${id}`, { transport: { subflows: 2 } });
      assert.equal(fewer.status, 200, fewer.text);
      const two = await waitFor((x) => x.inEffect?.subflows === 2, 'the open connection is down to 2 subflows after the change');
      assert.equal(two.inEffect!.pathManager!.subflowsUp, 2);
      assert.ok(two.inEffect!.pathManager!.subflows.some((s) => s.local.port === firstPort), 'the first subflow is kept');
      assert.equal(two.inEffect!.pathManager!.recreated, 0, 'subflows closed on purpose are not made again');
      assert.ok(dl.running, 'the download went on through the changes');
    } finally {
      await dl.stop('SIGTERM', 2000);
      await ew.api('DELETE', `/api/v1/policies/${id}`);
    }
  });

  test('the original system\'s flat file: an ndiffports line imports, and the next connection there gets 2 subflows', { timeout: 40_000 }, async () => {
    const dir = lab.tempDir('legacy');
    const legacy = join(dir, 'mptcp.conf');
    writeFileSync(legacy, '127.0.0.1,1,default,ndiffports,\n.\n');
    const imported = await ew.cli(['policy', 'import', legacy]);
    assert.equal(imported.code, 0, imported.stderr + imported.stdout);
    const policies = await ew.api('GET', '/api/v1/policies');
    const p = (policies.body as { policies: Array<{ id: number; match: { host?: string }; transport: Record<string, unknown> }> }).policies.find((x) => x.match.host === '127.0.0.1');
    assert.ok(p, policies.text);
    const dl = slowDownload({ socks: true });
    try {
      assert.equal(p.transport.mptcp, true, policies.text);
      assert.equal(p.transport.pathManager, 'ndiffports', policies.text);
      const c = await waitFor((x) => x.inEffect?.subflows === 2, 'the imported destination\'s connection has 2 subflows');
      assert.equal(c.inEffect!.pathManager?.mode, 'ndiffports');
      assert.equal(c.inEffect!.pathManager?.subflowsWanted, 2);
    } finally {
      await dl.stop('SIGTERM', 2000);
      await ew.api('DELETE', `/api/v1/policies/${p.id}`);
    }
  });

  test('a peer that refuses more joins: the connection keeps what it has, and asking again backs off', { timeout: 40_000 }, async () => {
    // the server side (this namespace's kernel) accepts one join per connection now
    await lab.mptcpLimits(ns, { subflows: 1, addAddrAccepted: 8 });
    const created = await ew.api('POST', '/api/v1/policies', { match: { cidr: '127.0.0.0/8', port: PORT }, transport: { mptcp: true, pathManager: 'ndiffports', subflows: 4 } });
    assert.equal(created.status, 201, created.text);
    const id = (created.body as { id: number }).id;
    const dl = slowDownload({ socks: true });
    try {
      await waitFor((x) => x.inEffect?.pathManager?.subflowsUp === 2 && x.inEffect.pathManager.recreated > 0, 'two subflows up and a refused one asked for again');
      const t0 = Date.now();
      await sleep(5000);
      const c = (await connections()).find((x) => x.destination.port === PORT)!;
      const pm = c.inEffect!.pathManager!;
      console.log(`refusing peer: ${JSON.stringify({ up: pm.subflowsUp, recreated: pm.recreated, lastError: pm.lastError, seconds: (Date.now() - t0) / 1000 })}`);
      assert.equal(pm.subflowsUp, 2, 'the accepted join stays');
      // 0.25 s doubling: within ~6 s at most 5 rounds of 2 subflows; a retry without backoff would be ~24 rounds
      assert.ok(pm.recreated <= 12, `asked again for ${pm.recreated} subflows`);
      assert.match(pm.lastError ?? '', /subflow 127\.0\.0\.1.* (failed|lost)/);
      assert.ok(dl.running, 'the download goes on');
    } finally {
      await dl.stop('SIGTERM', 2000);
      await ew.api('DELETE', `/api/v1/policies/${id}`);
      await lab.mptcpLimits(ns, { subflows: 8, addAddrAccepted: 8 });
    }
  });

  test("connections edgeward did not open keep their subflows: the kernel's path manager's, another program's userspace one", { timeout: 60_000 }, async () => {
    const created = await ew.api('POST', '/api/v1/policies', { match: { cidr: '127.0.0.0/8', port: PORT }, transport: { mptcp: true, pathManager: 'ndiffports', subflows: 3 } });
    assert.equal(created.status, 201, created.text);
    const id = (created.body as { id: number }).id;
    // a client under the kernel's path manager (the namespace's default), straight to the server
    const kernelPm = slowDownload({ mptcpize: true });
    // a client under the userspace path manager that edgeward did not open: another program's
    await lab.sysctl(ns, 'net.mptcp.path_manager', 'userspace');
    const script = [
      'import socket,sys,time',
      `s=socket.socket(socket.AF_INET,socket.SOCK_STREAM,262); s.connect(("127.0.0.1",${PORT}))`,
      's.sendall(b"GET /file.bin HTTP/1.0\\r\\n\\r\\n"); print("connected", s.getsockname()[1], flush=True)',
      'end=time.time()+30',
      'while time.time()<end:',
      '    s.recv(16384); time.sleep(0.01)',
    ].join('\n');
    const other = lab.spawn(ns, ['python3', '-c', script]);
    running.push(other);
    try {
      const deadline = Date.now() + 5000;
      while (!/connected \d+/.test(other.stdout()) && Date.now() < deadline) await sleep(50);
      await lab.sysctl(ns, 'net.mptcp.path_manager', 'kernel');
      const otherPort = Number(/connected (\d+)/.exec(other.stdout())?.[1]);
      assert.ok(otherPort > 0, `the userspace-PM client connected: ${other.stdout()} ${other.stderr()}`);

      const dl = slowDownload({ socks: true });
      try {
        const c = await waitFor((x) => x.inEffect?.pathManager?.subflowsUp === 3, 'edgeward made its own connection 3 subflows');
        const ownPort = c.inEffect!.pathManager!.subflows[0]!.local.port;
        await sleep(1500); // time for a stray command to show
        const ss = await mptcpToServer(lab, ns);
        console.log(`ownership: ss -M extra subflows by local port ${JSON.stringify([...ss])}; edgeward's ${ownPort}, userspace client ${otherPort}`);
        assert.equal(ss.get(ownPort), 2, "edgeward's connection has its 2 extra subflows");
        assert.equal(ss.get(otherPort), 0, "the other program's userspace-PM connection got no subflow from edgeward");
        const kernelOnes = [...ss].filter(([port]) => port !== ownPort && port !== otherPort);
        assert.ok(kernelOnes.length >= 1, `the kernel-PM client's connection is there: ${JSON.stringify([...ss])}`);
        for (const [port, extra] of kernelOnes) assert.equal(extra, 0, `the kernel-PM connection from ${port} kept its one subflow`);
        assert.ok(kernelPm.running, 'the kernel-PM download is still going');
      } finally {
        await dl.stop('SIGTERM', 2000);
      }
    } finally {
      await lab.sysctl(ns, 'net.mptcp.path_manager', 'kernel');
      await other.stop('SIGTERM', 2000);
      await kernelPm.stop('SIGTERM', 2000);
      await ew.api('DELETE', `/api/v1/policies/${id}`);
    }
  });
});
