// Hybrid access, end to end: an unaware client (curl with no proxy settings) behind a router that runs
// `edgeward start --intercept --firewall --upstream socks5://CONCENTRATOR`, two 50 Mbit/s uplinks to
// a concentrator running `edgeward start --socks-mptcp`, and a server behind it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { blackholeUplinkA, buildHybridLab, firewallState, startPeerEchoServer, timedDownload, type HybridLab } from '../helpers/hybrid-lab.js';
import { setDefaultTransport, startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { download, startFileServer, type FileServer } from '../helpers/file-server.js';
import { Lab } from '../helpers/netns.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const MIN_RATIO = 1.6;
const INTERCEPT_PORT = 15001;
const skip = requirement(labSkipReason({ needs: ['curl', 'python3', 'nft', 'sysctl'] }) ?? edgewardSkipReason());
if (skip) console.log(`hybrid access lab test skipped: ${skip}`);

interface ConnectionView {
  listener: string;
  destination: { address: string; port: number };
  upstream?: string;
  inEffect: { mptcp: boolean; subflows?: number } | null;
}

function connections(body: unknown): ConnectionView[] {
  const list = (body as { connections?: unknown } | undefined)?.connections;
  return Array.isArray(list) ? (list as ConnectionView[]) : [];
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('hybrid access: unaware client -> intercepting router == 2 uplinks ==> concentrator -> server', { skip }, () => {
  const lab = new Lab();
  let topo: HybridLab;
  let file: FileServer;
  let concentrator: EdgewardInLab;
  let router: EdgewardInLab | undefined;
  let pristine = '';

  const routerArgs = (extra: string[]): string[] => ['--intercept', String(INTERCEPT_PORT), '--firewall', '--intercept-interface', topo.lanIf, ...extra];

  before(async () => {
    topo = await buildHybridLab(lab, { rateMbit: 50 });
    file = await startFileServer(lab, topo.server, { addr: topo.serverAddr, sizeMiB: 24, mptcp: false });
    // on all addresses: the second subflow joins at the address the concentrator announces (uplink B)
    concentrator = await startEdgeward(lab, topo.concentrator, {
      socks: '0.0.0.0:1080',
      // reno on the hop back to the router (downloads flow that way): see bench/README.md
      args: ['--socks-mptcp', '--socks-allow', '10.251.0.0/16', '--client-congestion', 'reno'],
    });
    pristine = await firewallState(lab, topo.router);
    router = await startEdgeward(lab, topo.router, { args: routerArgs(['--upstream', `socks5://${topo.concentratorAddr}:1080`]) });
  }, { timeout: 60_000 });

  after(async () => {
    try {
      if (router?.process.running) await router.stop();
      if (concentrator?.process.running) await concentrator.stop();
    } finally {
      await lab.destroy();
    }
  });

  test('the client reaches the server by its real address with no proxy settings, through both edgewards', { timeout: 60_000 }, async () => {
    const dl = download(lab, topo.client, file.url);
    await delay(800);
    const seen = await router!.api('GET', '/api/v1/connections');
    const d = await dl;
    assert.equal(d.sha256, file.sha256, 'download arrived corrupt');
    const c = connections(seen.body).find((x) => x.destination.address === topo.serverAddr);
    console.log(`intercepted download ${d.mbps.toFixed(1)} Mbit/s; router lists ${JSON.stringify(c)}`);
    assert.ok(c, `the router does not list the connection to ${topo.serverAddr}: ${seen.text.slice(0, 500)}`);
    assert.equal(c.listener, 'intercept');
    assert.equal(c.destination.port, 8000);
    assert.equal(c.upstream, `socks5://${topo.concentratorAddr}:1080`);
    const cstats = await concentrator.api('GET', '/api/v1/stats');
    assert.ok((cstats.body as { connectionsTotal: number }).connectionsTotal >= 1, `the concentrator relayed nothing: ${cstats.text}`);
  });

  test('a connection addressed to the router itself is refused, not looped', { timeout: 20_000 }, async () => {
    const r = await lab.exec(topo.client, ['python3', '-c', `import socket; c = socket.create_connection(("${topo.lan.b.ip}", ${INTERCEPT_PORT}), timeout=5); c.settimeout(5); print(repr(c.recv(10)))`], { allowFailure: true, timeoutMs: 10_000 });
    console.log(`direct connection to the intercept port: exit ${r.code}, ${r.stdout.trim() || r.stderr.trim().split('\n').pop()}`);
    const stats = await router!.api('GET', '/api/v1/stats');
    const failures = (stats.body as { failures: Record<string, number> }).failures;
    assert.equal(failures.intercept_local_destination, 1, stats.text);
    assert.ok(r.stdout.includes("b''") || /reset|refused/i.test(r.stderr), `expected a closed connection, got ${r.stdout} ${r.stderr}`);
  });

  test('the intercept service reports the firewall it applied (GET /api/v1/intercept/firewall)', { timeout: 20_000 }, async () => {
    const r = await router!.api('GET', '/api/v1/intercept/firewall');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { table: 'edgeward_intercept', loaded: true, applied: true, managed: true });
    const m = await router!.api('GET', '/metrics');
    assert.match(m.text, /^edgeward_intercept_firewall_applied 1$/m, m.text);
  });

  test('a destination that refuses: the unaware client gets a reset, as without the router', { timeout: 20_000 }, async () => {
    const script = `import socket\nc = socket.create_connection(("${topo.serverAddr}", 9), timeout=5)\nc.settimeout(5)\ntry:\n    print(repr(c.recv(10)))\nexcept ConnectionResetError:\n    print("reset")`;
    const r = await lab.exec(topo.client, ['python3', '-c', script], { timeoutMs: 10_000 });
    console.log(`connection to a closed port behind the concentrator: ${r.stdout.trim()}`);
    assert.equal(r.stdout.trim(), 'reset');
  });

  test('IPv6 connections are intercepted too, and chained over the IPv4 uplinks', { timeout: 30_000 }, async () => {
    const echo6 = await startPeerEchoServer(lab, topo.server, topo.serverAddr6, 7006);
    const seen = await echo6.seenFrom(topo.client);
    console.log(`client ${topo.clientAddr6} -> [${topo.serverAddr6}]:7006 with no proxy settings: the server saw ${seen}`);
    assert.equal(seen, 'fd00:252::1', 'the server should see the concentrator, which the router chained the IPv6 connection to');
    const stats = await router!.api('GET', '/api/v1/stats');
    assert.ok((stats.body as { connectionsTotal: number }).connectionsTotal >= 2, stats.text);
  });

  test('an MPTCP policy on the router makes the download at least 1.6x as fast, over two subflows', { timeout: 90_000 }, async () => {
    let best = { tcp: 0, mptcp: 0 };
    let inEffect: ConnectionView['inEffect'] = null;
    for (let round = 1; round <= 2 && !(best.tcp > 0 && best.mptcp / best.tcp >= MIN_RATIO); round++) {
      await setDefaultTransport(router!, { mptcp: false });
      const tcp = await download(lab, topo.client, file.url);
      await setDefaultTransport(router!, { mptcp: true });
      const dl = download(lab, topo.client, file.url);
      await delay(1000);
      const seen = await router!.api('GET', '/api/v1/connections');
      const mptcp = await dl;
      inEffect ??= connections(seen.body).find((x) => x.destination.address === topo.serverAddr)?.inEffect ?? null;
      assert.equal(tcp.sha256, file.sha256);
      assert.equal(mptcp.sha256, file.sha256);
      best = { tcp: Math.max(best.tcp, tcp.mbps), mptcp: Math.max(best.mptcp, mptcp.mbps) };
      console.log(`round ${round}: router policy mptcp:false ${tcp.mbps.toFixed(1)} Mbit/s, mptcp:true ${mptcp.mbps.toFixed(1)} Mbit/s`);
    }
    const ratio = best.mptcp / best.tcp;
    console.log(`hybrid access MPTCP/TCP ratio ${ratio.toFixed(2)}; router inEffect ${JSON.stringify(inEffect)}`);
    assert.ok(best.tcp <= topo.rateMbit * 1.15, `plain TCP at ${best.tcp.toFixed(1)} Mbit/s: more than one ${topo.rateMbit} Mbit/s uplink`);
    assert.ok(ratio >= MIN_RATIO, `MPTCP/TCP = ${ratio.toFixed(2)} < ${MIN_RATIO}`);
    assert.equal(inEffect?.mptcp, true, 'the hop to the concentrator should be MPTCP');
    assert.equal(inEffect?.subflows, 2, 'the hop to the concentrator should use both uplinks');
  });

  test("edgeward's own path manager on the router's hop to the concentrator: ndiffports 2, in the intercepted connection's record", { timeout: 60_000 }, async () => {
    await setDefaultTransport(router!, { mptcp: true, pathManager: 'ndiffports', subflows: 2 });
    try {
      const dl = download(lab, topo.client, file.url);
      let pm: { subflowsUp?: number } | undefined;
      let kernelCount: number | undefined;
      for (let i = 0; i < 20 && pm?.subflowsUp !== 2; i++) {
        await delay(150);
        const seen = await router!.api('GET', '/api/v1/connections');
        const c = connections(seen.body).find((x) => x.destination.address === topo.serverAddr);
        pm = (c?.inEffect as { pathManager?: { subflowsUp?: number } } | null)?.pathManager;
        kernelCount = c?.inEffect?.subflows;
      }
      const d = await dl;
      console.log(`router hop under ndiffports 2: ${JSON.stringify(pm)}; download ${d.mbps.toFixed(1)} Mbit/s`);
      assert.equal(d.sha256, file.sha256);
      assert.equal(pm?.subflowsUp, 2, 'the path manager made the second subflow of the hop to the concentrator');
      assert.equal(kernelCount, 2, 'MPTCP_INFO counts 2 subflows');
    } finally {
      await setDefaultTransport(router!, { mptcp: true });
    }
  });

  test('uplink A dies mid-download and the download still completes intact', { timeout: 90_000 }, async () => {
    await setDefaultTransport(router!, { mptcp: true });
    const dl = timedDownload(lab, topo.client, file.url, 60_000);
    await delay(700);
    await lab.setLinkUp(topo.router, topo.upA.a.ifname, false);
    let d;
    try {
      d = await dl;
    } finally {
      await lab.setLinkUp(topo.router, topo.upA.a.ifname, true);
      // the link-down removed the route over uplink A
      await lab.ip(topo.router, ['route', 'replace', '10.252.0.0/24', 'via', topo.upA.b.ip]);
    }
    console.log(`download with uplink A cut at 0.7 s: ${d.bytes} bytes in ${d.seconds.toFixed(2)} s (${d.mbps.toFixed(1)} Mbit/s), longest stall ${d.maxStallSeconds.toFixed(2)} s`);
    assert.equal(d.bytes, file.bytes);
    assert.equal(d.sha256, file.sha256, 'the download arrived corrupt after the failover');
  });

  test('uplink A turns into a black hole mid-download (link still up) and the download still completes intact', { timeout: 90_000 }, async () => {
    await setDefaultTransport(router!, { mptcp: true });
    const dl = timedDownload(lab, topo.client, file.url, 60_000);
    await delay(700);
    await blackholeUplinkA(lab, topo, true);
    let d;
    try {
      d = await dl;
    } finally {
      await blackholeUplinkA(lab, topo, false);
    }
    console.log(`download with uplink A blackholed at 0.7 s: ${d.bytes} bytes in ${d.seconds.toFixed(2)} s, longest stall ${d.maxStallSeconds.toFixed(2)} s`);
    assert.equal(d.sha256, file.sha256, 'the download arrived corrupt after the failover');
  });

  test('stopping the router removes its firewall: the ruleset is as it was', { timeout: 30_000 }, async () => {
    const during = await firewallState(lab, topo.router);
    assert.notEqual(during, pristine, 'edgeward --firewall should have added its rules');
    const exit = await router!.stop(10_000);
    assert.equal(exit.code, 0, router!.process.stderr().slice(-2000));
    assert.equal(await firewallState(lab, topo.router), pristine);
  });

  test('--transparent-source: the server sees the client address', { timeout: 40_000 }, async () => {
    const echo = await startPeerEchoServer(lab, topo.server, topo.serverAddr);
    router = await startEdgeward(lab, topo.router, { args: routerArgs(['--transparent-source']) });
    const seen = await echo.seenFrom(topo.client);
    console.log(`with --transparent-source the server saw ${seen} (client ${topo.clientAddr})`);
    assert.equal(seen, topo.clientAddr);
    await router.stop(10_000);
    router = await startEdgeward(lab, topo.router, { args: routerArgs([]) });
    const seenPlain = await echo.seenFrom(topo.client);
    console.log(`without it the server saw ${seenPlain}`);
    assert.equal(seenPlain, topo.upA.a.ip);
    const exit = await router.stop(10_000);
    assert.equal(exit.code, 0);
    assert.equal(await firewallState(lab, topo.router), pristine);
  });
});
