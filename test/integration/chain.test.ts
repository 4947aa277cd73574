// Chaining on loopback: a gateway with --upstream hands its connections to a second edgeward through
// SOCKS5 (with username/password), policies choose "direct" or another upstream per destination,
// the upstream's refusals reach the client, and the command line's transport defaults (--no-delay,
// --keepalive) and --bind-outgoing are in effect on real sockets. Clients: curl.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { closedPort, SocketReader, startHttpServer, startTcpServer, startTestDns, tcpConnect, type HttpPeer, type TcpPeer, type TestDns } from '../helpers/peers.js';
import { runCmd } from '../helpers/process.js';

/** The name only the upstream's resolver knows. */
const UPSTREAM_ONLY_NAME = 'far.edgeward.test';
const SYSTEM_CC = readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
/** a congestion control other than the kernel's default, so that seeing it proves the flag worked */
const CLIENT_CC = SYSTEM_CC === 'reno' ? 'bbr' : 'reno';

interface Stats {
  connectionsTotal: number;
  failures: Record<string, number>;
}

interface ConnectionView {
  destination: { address: string; port: number };
  upstream?: string;
  inEffect: { noDelay?: boolean; keepAlive?: false | { idle: number; interval: number; count: number } } | null;
}

async function curl(socks: string, url: string, user?: string): Promise<{ code: number | null; body: string; stderr: string }> {
  const argv = ['curl', '-sS', '--max-time', '10', '--socks5', socks, ...(user ? ['--proxy-user', user] : []), url];
  const r = await runCmd(argv, { timeoutMs: 15_000 });
  return { code: r.code, body: r.stdout, stderr: r.stderr };
}

async function total(g: Gateway): Promise<number> {
  const r = await g.api<Stats>('GET', '/api/v1/stats');
  return r.body.connectionsTotal;
}

describe('chaining through an upstream edgeward', () => {
  let upstream: Gateway;
  let router: Gateway;
  let web: HttpPeer;
  let upstreamDns: TestDns;
  let routerDns: TestDns;

  before(async () => {
    web = await startHttpServer('hello through the chain');
    // name lookups stay on loopback; the upstream knows a name the router does not
    upstreamDns = await startTestDns({ [UPSTREAM_ONLY_NAME]: '127.0.0.1' });
    routerDns = await startTestDns();
    upstream = await startGateway({
      args: ['--socks-auth', '--socks-mptcp', '--client-congestion', CLIENT_CC],
      resolvConf: `nameserver ${upstreamDns.address}\noptions attempts:1 timeout:2\n`,
    });
    const u = await upstream.api('POST', '/api/v1/users', { username: 'hop', password: 'hop-secret' });
    assert.equal(u.status, 201, u.text);
    router = await startGateway({
      args: ['--upstream', `socks5://hop:hop-secret@127.0.0.1:${upstream.socksPort}`, '--no-delay', '--keepalive', '45,7,4'],
      resolvConf: `nameserver ${routerDns.address}\noptions attempts:1 timeout:2\n`,
    });
  });

  after(async () => {
    await router?.stop();
    await upstream?.stop();
    await web?.close();
    await upstreamDns?.close();
    await routerDns?.close();
  });

  it('carries a request through both gateways, and says so in /api/v1/connections', async () => {
    const before = await total(upstream);
    const held = await startTcpServer(() => undefined); // keeps the connection open while we look
    const url = `http://127.0.0.1:${web.port}/`;
    const r = await curl(`127.0.0.1:${router.socksPort}`, url);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.body, 'hello through the chain');
    assert.equal(await total(upstream), before + 1, 'the upstream relayed the connection');

    // an open connection: the router lists it with its upstream and the command line's defaults
    const sock = await import('node:net').then((net) => net.connect(router.socksPort, '127.0.0.1'));
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    sock.write(Buffer.from([5, 1, 0]));
    const req = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 0]);
    req.writeUInt16BE(held.port, 8);
    await new Promise((r2) => sock.once('data', r2));
    sock.write(req);
    const reply = await new Promise<Buffer>((r2) => sock.once('data', r2));
    assert.equal(reply[1], 0, 'SOCKS reply');
    const list = await router.api<{ connections: ConnectionView[] }>('GET', '/api/v1/connections');
    const c = list.body.connections.find((x) => x.destination.port === held.port);
    assert.ok(c, list.text);
    assert.equal(c.upstream, `socks5://hop@127.0.0.1:${upstream.socksPort}`, 'the upstream is shown without its password');
    assert.equal(c.inEffect?.noDelay, true, '--no-delay is in effect on the hop');
    assert.deepEqual(c.inEffect?.keepAlive, { idle: 45, interval: 7, count: 4 }, '--keepalive is in effect on the hop');
    assert.ok(!list.text.includes('hop-secret'), 'the password never shows');
    // --client-congestion on the upstream: its accepted socket (the hop from the router) runs it
    const ss = await runCmd(['ss', '-tinH', 'state', 'established', `( sport = :${upstream.socksPort} )`], { timeoutMs: 10_000 });
    assert.match(ss.stdout, new RegExp(`\\b${CLIENT_CC}\\b`), `ss -ti of the upstream's accepted socket (kernel default ${SYSTEM_CC}):\n${ss.stdout}`);
    sock.destroy();
    await held.close();
  });

  it('hands a name the router cannot resolve to the upstream, which resolves it', async () => {
    const r = await runCmd(['curl', '-sS', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${router.socksPort}`, `http://${UPSTREAM_ONLY_NAME}:${web.port}/`], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello through the chain');
    assert.ok(routerDns.queries.some((q) => q.endsWith(UPSTREAM_ONLY_NAME)), `the router tried its own resolver first: ${routerDns.queries.join(', ')}`);
    assert.ok(upstreamDns.queries.some((q) => q.endsWith(UPSTREAM_ONLY_NAME)), 'the upstream resolved it');
  });

  it('passes the upstream\'s refusal on to the client', async () => {
    const port = await closedPort();
    const r = await runCmd(['curl', '-sS', '--max-time', '10', '--socks5', `127.0.0.1:${router.socksPort}`, `http://127.0.0.1:${port}/`], { timeoutMs: 15_000 });
    assert.equal(r.code, 97, `curl exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /refused|connection/i);
    const stats = await router.api<Stats>('GET', '/api/v1/stats');
    assert.ok((stats.body.failures.connection_refused ?? 0) >= 1, stats.text);
  });

  it('a policy with via "direct" bypasses the upstream; one with its own via uses it', async () => {
    const direct = await router.api<{ id: number }>('POST', '/api/v1/policies', { match: { host: '127.0.0.1', port: web.port }, transport: {}, via: 'direct' });
    assert.equal(direct.status, 201, direct.text);
    const before = await total(upstream);
    const r = await curl(`127.0.0.1:${router.socksPort}`, `http://127.0.0.1:${web.port}/`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await total(upstream), before, 'a direct policy must not touch the upstream');

    const wrong = await router.api('PATCH', `/api/v1/policies/${direct.body.id}`, { via: `socks5://hop:wrong@127.0.0.1:${upstream.socksPort}` });
    assert.equal(wrong.status, 200, wrong.text);
    const refused = await curl(`127.0.0.1:${router.socksPort}`, `http://127.0.0.1:${web.port}/`);
    assert.equal(refused.code, 97, 'the upstream refused the wrong password: the client is refused (reply 2)');
    await router.api('DELETE', `/api/v1/policies/${direct.body.id}`);
  });

  it('rejects a via that is not "direct" or a socks5 URL, naming the field', async () => {
    const r = await router.api<{ error: { field: string; message: string } }>('POST', '/api/v1/policies', { match: { cidr: '198.51.100.0/24' }, transport: {}, via: 'http://proxy:3128' });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.error.field, 'body.via');
    assert.match(r.body.error.message, /socks5:\/\//);
  });
});

/** A SOCKS5 CONNECT to 127.0.0.1:port by a raw client, up to the method reply: the request is sent, its reply not read. */
async function requestThrough(socksPort: number, port: number): Promise<SocketReader> {
  const s = await tcpConnect('127.0.0.1', socksPort);
  const r = new SocketReader(s);
  s.write(Buffer.from([5, 1, 0]));
  assert.deepEqual([...(await r.read(2))], [5, 0]);
  const req = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 0]);
  req.writeUInt16BE(port, 8);
  s.write(req);
  return r;
}

/** Resolves when `peer` has seen `n` connections close. */
async function closedConnections(peer: { accepted: { closed: boolean }[] }, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (peer.accepted.filter((c) => c.closed).length < n) {
    if (Date.now() > deadline) throw new Error(`${peer.accepted.filter((c) => c.closed).length} of ${n} connections closed after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('an upstream that misbehaves: scripted SOCKS5 servers on loopback', () => {
  /** connections the scripted upstream accepted, and whether each has closed */
  const accepted: { closed: boolean }[] = [];
  let silent: TcpPeer;
  let banner: TcpPeer;
  let echo: TcpPeer;
  const track = (s: import('node:net').Socket): void => {
    const c = { closed: false };
    accepted.push(c);
    // the router's FIN ('end': these sockets allow half-open) or a reset ('close')
    s.once('end', () => (c.closed = true));
    s.once('close', () => (c.closed = true));
  };

  before(async () => {
    // takes the connection, reads, never answers
    silent = await startTcpServer((s) => {
      track(s);
      s.resume();
    });
    // answers the handshake and, in the same write as its reply, the destination's first bytes
    // (a server that speaks first: an SSH or SMTP banner); then echoes
    banner = await startTcpServer((s) => {
      let stage = 0;
      let buf = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (stage === 0 && buf.length >= 3) {
          buf = buf.subarray(3);
          s.write(Buffer.from([5, 0]));
          stage = 1;
        }
        if (stage === 1 && buf.length >= 10) {
          buf = buf.subarray(10);
          s.write(Buffer.concat([Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39]), Buffer.from('BANNER\n')]));
          stage = 2;
        }
        if (stage === 2 && buf.length > 0) {
          s.write(buf);
          buf = Buffer.alloc(0);
        }
      });
      s.on('end', () => s.end());
    });
    echo = await startTcpServer(() => undefined);
  });

  after(async () => {
    await silent?.close();
    await banner?.close();
    await echo?.close();
  });

  it('an upstream that never answers: reply 6 (TTL expired) at the connect timeout, its connection closed, counted', { timeout: 20_000 }, async () => {
    const g = await startGateway({ args: ['--upstream', `socks5://127.0.0.1:${silent.port}`, '--connect-timeout', '1'] });
    try {
      const before = accepted.length;
      const r = await requestThrough(g.socksPort, echo.port);
      const started = Date.now();
      const reply = await r.read(2, 5000);
      assert.deepEqual([...reply], [5, 6], 'reply 6: TTL expired');
      const took = Date.now() - started;
      assert.ok(took >= 800 && took < 4000, `answered ${took} ms after the request, at the 1 s connect timeout`);
      await closedConnections({ accepted: accepted.slice(before) }, 1, 3000);
      const stats = await g.api<Stats>('GET', '/api/v1/stats');
      assert.equal(stats.body.failures.ttl_expired, 1, stats.text);
    } finally {
      await g.stop();
    }
  });

  it('a client that leaves while the upstream has not answered: the connection to the upstream closes at once, nothing counted as a timeout', { timeout: 20_000 }, async () => {
    const g = await startGateway({ args: ['--upstream', `socks5://127.0.0.1:${silent.port}`, '--connect-timeout', '5'] });
    try {
      const before = accepted.length;
      const r = await requestThrough(g.socksPort, echo.port);
      const deadline = Date.now() + 3000;
      while (accepted.length === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
      assert.equal(accepted.length, before + 1, 'the router reached the upstream');
      const left = Date.now();
      r.socket.resetAndDestroy();
      await closedConnections({ accepted: accepted.slice(before) }, 1, 2000);
      assert.ok(Date.now() - left < 2000, 'closed before the 5 s connect timeout');
      const stats = await g.api<Stats>('GET', '/api/v1/stats');
      assert.equal(stats.body.failures.ttl_expired ?? 0, 0, stats.text);
    } finally {
      await g.stop();
    }
  });

  it('bytes the upstream sends with its reply reach the client first, then the relay carries on both ways', { timeout: 20_000 }, async () => {
    const g = await startGateway({ args: ['--upstream', `socks5://127.0.0.1:${banner.port}`] });
    try {
      const r = await requestThrough(g.socksPort, echo.port);
      assert.deepEqual([...(await r.read(10))].slice(0, 2), [5, 0], 'reply 0: succeeded');
      assert.equal((await r.read(7)).toString(), 'BANNER\n');
      r.socket.write('ping');
      assert.equal((await r.read(4)).toString(), 'ping');
      r.socket.destroy();
    } finally {
      await g.stop();
    }
  });
});

describe('--bind-outgoing', () => {
  it('connections leave from the given address', async () => {
    const seen: string[] = [];
    const server = await startTcpServer((s) => {
      seen.push(s.remoteAddress ?? '');
      s.end('HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const g = await startGateway({ args: ['--bind-outgoing', '127.0.0.7'] });
    try {
      const r = await runCmd(['curl', '-sS', '--max-time', '10', '--socks5', `127.0.0.1:${g.socksPort}`, `http://127.0.0.1:${server.port}/`], { timeoutMs: 15_000 });
      assert.equal(r.stdout, 'ok', r.stderr);
      assert.deepEqual(seen, ['127.0.0.7']);
    } finally {
      await g.stop();
      await server.close();
    }
  });
});
