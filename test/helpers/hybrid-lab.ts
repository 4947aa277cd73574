// The hybrid-access topology: unaware clients behind a router that intercepts their connections
// (TPROXY) and carries them over two uplinks, with MPTCP, to a concentrator that relays them to the
// server. All of it in one lab's namespaces, on private addresses:
//
//   client 10.250.0.2 --lan-- 10.250.0.1 router 10.251.1.1 ==up A (tbf)== 10.251.1.2 concentrator 10.252.0.1 -- 10.252.0.2 server
//                                               10.251.2.1 ==up B (tbf)== 10.251.2.2
//
// The client's default route points at the router; the router forwards (so traffic it does not
// intercept still flows) and routes the server's subnet over uplink A; the concentrator forwards
// and routes the LAN back over uplink A, so the path also works without the proxy (and with
// --transparent-source). MPTCP: both ends accept 2 subflows; the concentrator announces its
// uplink-B address, so a router->concentrator MPTCP connection gets a second subflow over uplink B.
import type { Lab, Link, Netns } from './netns.js';

export interface HybridLab {
  lab: Lab;
  client: Netns;
  router: Netns;
  concentrator: Netns;
  server: Netns;
  lan: Link;
  upA: Link;
  upB: Link;
  core: Link;
  /** the router's LAN interface (what --intercept-interface names) */
  lanIf: string;
  clientAddr: string;
  serverAddr: string;
  /** IPv6 on the LAN and behind the concentrator (the uplinks stay IPv4: the hop is chained) */
  clientAddr6: string;
  serverAddr6: string;
  /** the concentrator's uplink-A address: where the router's upstream points */
  concentratorAddr: string;
  rateMbit: number;
}

export async function buildHybridLab(lab: Lab, opts: { rateMbit?: number } = {}): Promise<HybridLab> {
  const rateMbit = opts.rateMbit ?? 50;
  const client = await lab.addNamespace('client');
  const router = await lab.addNamespace('router');
  const concentrator = await lab.addNamespace('conc');
  const server = await lab.addNamespace('server');
  const lan = await lab.link(client, router, { addrA: '10.250.0.2/24', addrB: '10.250.0.1/24', ifA: 'eth0', ifB: 'lan0' });
  const upA = await lab.link(router, concentrator, { addrA: '10.251.1.1/24', addrB: '10.251.1.2/24', rateMbit, ifA: 'upa', ifB: 'upa' });
  const upB = await lab.link(router, concentrator, { addrA: '10.251.2.1/24', addrB: '10.251.2.2/24', rateMbit, ifA: 'upb', ifB: 'upb' });
  const core = await lab.link(concentrator, server, { addrA: '10.252.0.1/24', addrB: '10.252.0.2/24', ifA: 'srv0', ifB: 'eth0' });

  // IPv6 on the client's LAN and the server's side: the router intercepts IPv6 too and chains it
  // over the IPv4 uplinks; the concentrator reaches the server directly
  await lab.ip(client, ['addr', 'add', 'fd00:250::2/64', 'dev', lan.a.ifname, 'nodad']);
  await lab.ip(router, ['addr', 'add', 'fd00:250::1/64', 'dev', lan.b.ifname, 'nodad']);
  await lab.ip(concentrator, ['addr', 'add', 'fd00:252::1/64', 'dev', core.a.ifname, 'nodad']);
  await lab.ip(server, ['addr', 'add', 'fd00:252::2/64', 'dev', core.b.ifname, 'nodad']);
  await lab.ip(client, ['-6', 'route', 'add', 'default', 'via', 'fd00:250::1']);
  await lab.ip(client, ['route', 'add', 'default', 'via', lan.b.ip]);
  await lab.ip(server, ['route', 'add', 'default', 'via', core.a.ip]);
  await lab.ip(router, ['route', 'add', '10.252.0.0/24', 'via', upA.b.ip]);
  await lab.ip(concentrator, ['route', 'add', '10.250.0.0/24', 'via', upA.a.ip]);
  for (const ns of [router, concentrator]) {
    await lab.sysctl(ns, 'net.ipv4.ip_forward', 1);
    await lab.mptcpLimits(ns, { subflows: 2, addAddrAccepted: 2 });
  }
  await lab.mptcpEndpoint(concentrator, upB.b.ip, upB.b.ifname, ['signal']);
  return {
    lab,
    client,
    router,
    concentrator,
    server,
    lan,
    upA,
    upB,
    core,
    lanIf: lan.b.ifname,
    clientAddr: lan.a.ip,
    serverAddr: core.b.ip,
    clientAddr6: 'fd00:250::2',
    serverAddr6: 'fd00:252::2',
    concentratorAddr: upA.b.ip,
    rateMbit,
  };
}

export interface PeerEchoServer {
  port: number;
  /** asks the server, from `ns`, which address it sees the connection coming from */
  seenFrom(ns: Netns): Promise<string>;
}

/**
 * A TCP server in `ns` that answers every connection with the peer address it sees, then closes:
 * how a test learns which source address reached the server.
 */
export async function startPeerEchoServer(lab: Lab, ns: Netns, addr: string, port = 7000): Promise<PeerEchoServer> {
  const script = [
    'import socket',
    `s = socket.socket(socket.AF_INET6 if ":" in "${addr}" else socket.AF_INET)`,
    's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    `s.bind(("${addr}", ${port}))`,
    's.listen(16)',
    'print("ready", flush=True)',
    'while True:',
    '    c, a = s.accept()',
    '    c.sendall((a[0] + "\\n").encode())',
    '    c.close()',
  ].join('\n');
  const proc = lab.spawn(ns, ['python3', '-c', script]);
  await proc.waitForOutput(/ready/);
  return {
    port,
    async seenFrom(from: Netns): Promise<string> {
      const r = await lab.exec(from, ['python3', '-c', `import socket; c = socket.create_connection(("${addr}", ${port}), timeout=5); c.settimeout(5); print(c.recv(100).decode().strip())`], { timeoutMs: 10_000 });
      return r.stdout.trim();
    },
  };
}

/**
 * The router's firewall state, for "remove leaves it as it was": the nftables ruleset, the ip rules
 * and the routes, without the routes the kernel itself adds and removes for addresses and links
 * (IPv6 link-local ones come and go with a link), each list sorted.
 */
export async function firewallState(lab: Lab, ns: Netns): Promise<string> {
  const nft = await lab.exec(ns, ['nft', 'list', 'ruleset']);
  const rules = await lab.ip(ns, ['rule', 'show']);
  const rules6 = await lab.ip(ns, ['-6', 'rule', 'show']);
  const routes = await lab.ip(ns, ['route', 'show', 'table', 'all']);
  const routes6 = await lab.ip(ns, ['-6', 'route', 'show', 'table', 'all']);
  const notKernel = (text: string): string =>
    text
      .split('\n')
      .filter((l) => l.trim() !== '' && !/proto kernel/.test(l))
      .sort()
      .join('\n');
  return [nft.stdout, rules.stdout, rules6.stdout, notKernel(routes.stdout), notKernel(routes6.stdout)].join('\n--\n');
}

/**
 * Makes uplink A of the router a black hole, or ends that: every packet in or out of it is dropped
 * while its link stays up, as when a mobile uplink loses service (no carrier loss tells the kernel).
 */
export async function blackholeUplinkA(lab: Lab, topo: HybridLab, on: boolean): Promise<void> {
  await lab.blackhole(topo.router, topo.upA.a.ifname, on);
}

export interface TimedDownload {
  bytes: number;
  seconds: number;
  mbps: number;
  sha256: string;
  /** the longest time without a byte arriving, after the first byte */
  maxStallSeconds: number;
}

/**
 * Downloads `url` (plain HTTP GET, no proxy) from inside `ns` with a small python client that
 * timestamps every read, so a failover's stall can be measured.
 */
export async function timedDownload(lab: Lab, ns: Netns, url: string, timeoutMs = 60_000): Promise<TimedDownload> {
  const u = new URL(url);
  const script = [
    'import socket, time, hashlib, json, sys',
    `s = socket.create_connection(("${u.hostname}", ${u.port || 80}), timeout=${Math.ceil(timeoutMs / 1000)})`,
    `s.sendall(b"GET ${u.pathname} HTTP/1.0\\r\\nHost: ${u.host}\\r\\n\\r\\n")`,
    'h = hashlib.sha256(); head = b""; body = 0; t0 = time.time(); first = None; last = None; stall = 0.0',
    'while True:',
    '    d = s.recv(262144)',
    '    now = time.time()',
    '    if not d: break',
    '    if first is None: first = now; print("started", flush=True)',
    '    if last is not None: stall = max(stall, now - last)',
    '    last = now',
    '    if body == 0 and b"\\r\\n\\r\\n" not in head:',
    '        head += d',
    '        if b"\\r\\n\\r\\n" in head:',
    '            rest = head.split(b"\\r\\n\\r\\n", 1)[1]; h.update(rest); body += len(rest)',
    '        continue',
    '    h.update(d); body += len(d)',
    'el = time.time() - t0',
    'print(json.dumps({"bytes": body, "seconds": el, "sha256": h.hexdigest(), "stall": stall}), flush=True)',
  ].join('\n');
  const r = await lab.exec(ns, ['python3', '-c', script], { timeoutMs: timeoutMs + 5000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const o = JSON.parse(line) as { bytes: number; seconds: number; sha256: string; stall: number };
  return { bytes: o.bytes, seconds: o.seconds, mbps: (o.bytes * 8) / o.seconds / 1e6, sha256: o.sha256, maxStallSeconds: o.stall };
}
