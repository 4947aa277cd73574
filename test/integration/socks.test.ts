// The SOCKS side of the real program (`node bin/edgeward.js start`, run by test/helpers/edgeward.ts)
// driven by clients nobody here wrote: curl (SOCKS5, SOCKS5 with remote names, SOCKS4, SOCKS4a,
// IPv6, username/password), proxychains4 around a proxy-unaware program, and the npm `socks`
// client (CONNECT, UDP ASSOCIATE, BIND); raw bytes where the point is a reply code. Everything on
// loopback; name lookups of the main gateway and of curl go to DNS servers on loopback (startTestDns).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import {
  closedPort,
  SocketReader,
  startEchoServer,
  startHttpServer,
  startTcpServer,
  startTestDns,
  startUdpEchoServer,
  tcpConnect,
  withResolvConf,
  type HttpPeer,
  type TcpPeer,
  type TestDns,
} from '../helpers/peers.js';
import { assertBuilt, missingPrograms, requirement } from '../helpers/requirements.js';
import { runCmd, waitFor } from '../helpers/process.js';

const T = { timeout: 30_000 };
// Name lookups are kept on loopback with a private /etc/resolv.conf (unshare -m) naming a DNS server
// on 127.53.0.N:53: both need root. Without it, the tests that look names up are skipped (under CI=true, they fail).
const DNS_SKIP = requirement(
  process.getuid?.() !== 0 ? 'needs root: a private /etc/resolv.conf (unshare -m) and a DNS server on port 53 keep name lookups on loopback' : missingPrograms(['unshare', 'mount']),
);
const TN = { ...T, skip: DNS_SKIP };
const CURL_PROXY_ERROR = 97; // CURLE_PROXY: the proxy refused (handshake, auth, or the request)

interface Stats {
  connectionsTotal: number;
  bytesUp: number;
  bytesDown: number;
  failures: Record<string, number>;
  authFailures: number;
  rejectedClients: number;
  active: number;
}

interface ConnectionView {
  id: number;
  listener: string;
  command: string;
  client: { address: string; port: number };
  destination: { host?: string; address: string; port: number };
}

async function stats(gw: Gateway): Promise<Stats> {
  const r = await gw.api<Stats>('GET', '/api/v1/stats');
  assert.equal(r.status, 200, r.text);
  return r.body;
}

/** curl with a hard timeout; with `resolvFile`, its own name lookups go where that resolv.conf says. */
function curl(args: string[], resolvFile?: string): ReturnType<typeof runCmd> {
  const argv = ['curl', '--silent', '--show-error', '--max-time', '10', ...args];
  return runCmd(resolvFile ? withResolvConf(resolvFile, argv) : argv, { timeoutMs: 15_000 });
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A SOCKS5 CONNECT through the gateway with the npm `socks` client; resolves with the relayed socket. */
async function socksConnect(gw: Gateway, host: string, port: number): Promise<net.Socket> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: gw.socksHost, port: gw.socksPort, type: 5 },
    command: 'connect',
    destination: { host, port },
    timeout: 10_000,
  });
  socket.on('error', () => undefined);
  return socket;
}

/** SOCKS5 address field for an IPv4 literal or a name. */
function addressField(host: string, port: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  if (net.isIPv4(host)) return Buffer.concat([Buffer.from([0x01, ...host.split('.').map(Number)]), p]);
  const name = Buffer.from(host, 'latin1');
  return Buffer.concat([Buffer.from([0x03, name.length]), name, p]);
}

/**
 * Speaks SOCKS5 by hand: no-auth greeting, then `request` (VER CMD RSV ATYP ...). Resolves with
 * the reply code and the reader (so the test can see the connection close).
 */
async function rawRequest(gw: Gateway, request: Buffer): Promise<{ rep: number; reader: SocketReader }> {
  const s = await tcpConnect(gw.socksHost, gw.socksPort);
  const reader = new SocketReader(s);
  s.write(Buffer.from([0x05, 0x01, 0x00]));
  assert.deepEqual([...(await reader.read(2))], [0x05, 0x00], 'method selection: no authentication');
  s.write(request);
  const head = await reader.read(4, 10_000);
  assert.equal(head[0], 0x05, 'reply version');
  const atyp = head[3];
  const rest = atyp === 0x01 ? 6 : atyp === 0x04 ? 18 : atyp === 0x03 ? (await reader.read(1))[0]! + 2 : -1;
  assert.ok(rest > 0, `reply address type ${atyp}`);
  await reader.read(rest);
  return { rep: head[1]!, reader };
}

function connectRequest(host: string, port: number, cmd = 0x01): Buffer {
  return Buffer.concat([Buffer.from([0x05, cmd, 0x00]), addressField(host, port)]);
}

describe('edgeward start: SOCKS through the real program', () => {
  // two resolvers on loopback: the gateway's knows GATEWAY_ONLY_NAME, curl's knows no name at all,
  // so a page fetched by that name proves the gateway resolved it (and nothing asks a real DNS server)
  const GATEWAY_ONLY_NAME = 'web.edgeward.test';
  let dns: TestDns;
  let clientDns: TestDns;
  let clientResolv: string | undefined;
  let tmp: string;
  let gw: Gateway;
  let web: HttpPeer;
  let echo: TcpPeer;
  const BODY = `hello through edgeward ${randomBytes(8).toString('hex')}\n`;

  before(
    async () => {
      assertBuilt();
      web = await startHttpServer(BODY);
      echo = await startEchoServer();
      const args = ['--socks-deny', '127.0.0.2/32', '--log-level', 'debug'];
      if (DNS_SKIP) {
        gw = await startGateway({ args });
        return;
      }
      dns = await startTestDns({ [GATEWAY_ONLY_NAME]: '127.0.0.1' });
      clientDns = await startTestDns();
      tmp = mkdtempSync(join(tmpdir(), 'edgeward-socks-'));
      clientResolv = join(tmp, 'client-resolv.conf');
      writeFileSync(clientResolv, `nameserver ${clientDns.address}\noptions attempts:1 timeout:2\n`);
      gw = await startGateway({ args, resolvConf: `nameserver ${dns.address}\noptions attempts:1 timeout:2\n` });
    },
    { timeout: 60_000 },
  );

  after(async () => {
    await gw?.stop();
    await web?.close();
    await echo?.close();
    await dns?.close();
    await clientDns?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('curl', () => {
    it('fetches a page with --socks5 by IPv4 address', T, async () => {
      const before = await stats(gw);
      const r = await curl(['--socks5', `${gw.socksHost}:${gw.socksPort}`, `http://127.0.0.1:${web.port}/by-ip`], clientResolv);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, BODY);
      assert.equal(web.requests.at(-1)?.url, '/by-ip');
      const after = await stats(gw);
      assert.equal(after.connectionsTotal, before.connectionsTotal + 1, 'the request went through the gateway');
    });

    it('fetches a page with --socks5-hostname by the name "localhost", sent to the gateway as a name', T, async () => {
      const r = await curl(['--socks5-hostname', `${gw.socksHost}:${gw.socksPort}`, `http://localhost:${web.port}/by-name`], clientResolv);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, BODY);
      assert.equal(web.requests.at(-1)?.url, '/by-name');
      await gw.waitForLog((l) => l.msg === 'SOCKS request' && l.host === 'localhost' && l.port === web.port, 5000);
    });

    it('fetches a page with --socks5-hostname by a name only the gateway can resolve', TN, async () => {
      const r = await curl(['--socks5-hostname', `${gw.socksHost}:${gw.socksPort}`, `http://${GATEWAY_ONLY_NAME}:${web.port}/remote-name`], clientResolv);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, BODY);
      assert.deepEqual(web.requests.at(-1), { method: 'GET', url: '/remote-name', host: `${GATEWAY_ONLY_NAME}:${web.port}` });
      assert.ok(dns.queries.includes(`A ${GATEWAY_ONLY_NAME}`), `the gateway looked the name up: ${dns.queries.join(', ')}`);
      assert.ok(!clientDns.queries.some((q) => q.endsWith(GATEWAY_ONLY_NAME)), 'curl did not');
    });

    it('fetches a page with --socks4', T, async () => {
      const r = await curl(['--socks4', `${gw.socksHost}:${gw.socksPort}`, `http://127.0.0.1:${web.port}/socks4`], clientResolv);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, BODY);
      assert.equal(web.requests.at(-1)?.url, '/socks4');
    });

    it('fetches a page with --socks4a by the name "localhost"', T, async () => {
      const local = await curl(['--socks4a', `${gw.socksHost}:${gw.socksPort}`, `http://localhost:${web.port}/socks4a`], clientResolv);
      assert.equal(local.code, 0, local.stderr);
      assert.equal(local.stdout, BODY);
      assert.equal(web.requests.at(-1)?.url, '/socks4a');
    });

    it('fetches a page with --socks4a by a name only the gateway can resolve', TN, async () => {
      const asked = dns.queries.length;
      const remote = await curl(['--socks4a', `${gw.socksHost}:${gw.socksPort}`, `http://${GATEWAY_ONLY_NAME}:${web.port}/socks4a-remote`], clientResolv);
      assert.equal(remote.code, 0, remote.stderr);
      assert.equal(remote.stdout, BODY);
      assert.equal(web.requests.at(-1)?.url, '/socks4a-remote');
      assert.ok(dns.queries.slice(asked).includes(`A ${GATEWAY_ONLY_NAME}`), 'the gateway looked the name up');
      assert.ok(!clientDns.queries.some((q) => q.endsWith(GATEWAY_ONLY_NAME)), 'curl did not');
    });
  });

  describe('proxychains4', () => {
    it('carries a proxy-unaware program\'s TCP connection through the gateway', T, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'edgeward-pc-'));
      try {
        const conf = join(dir, 'proxychains.conf');
        writeFileSync(conf, `strict_chain\nquiet_mode\ntcp_read_time_out 8000\ntcp_connect_time_out 5000\n[ProxyList]\nsocks5 ${gw.socksHost} ${gw.socksPort}\n`);
        const token = `unaware-${randomBytes(6).toString('hex')}`;
        // a plain socket program: it knows nothing of SOCKS
        const script = [
          'import socket, sys',
          's = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=8)',
          's.sendall(sys.argv[3].encode())',
          's.shutdown(socket.SHUT_WR)',
          'data = b""',
          'while True:',
          '    chunk = s.recv(4096)',
          '    if not chunk: break',
          '    data += chunk',
          'print(data.decode(), end="")',
        ].join('\n');
        const before = await stats(gw);
        const r = await runCmd(['proxychains4', '-q', '-f', conf, '/usr/bin/python3', '-c', script, '127.0.0.1', String(echo.port), token], { timeoutMs: 20_000 });
        assert.equal(r.code, 0, `proxychains4 failed: ${r.stderr}`);
        assert.equal(r.stdout, token, 'the echo came back');
        const after = await waitFor('the relayed connection to be counted', async () => {
          const s = await stats(gw);
          // <=, not ===: an earlier test's connection may close meanwhile (its HTTP server's keep-alive ends)
          return s.connectionsTotal > before.connectionsTotal && s.active <= before.active ? s : undefined;
        });
        assert.equal(after.connectionsTotal, before.connectionsTotal + 1, 'exactly one connection went through edgeward');
        assert.ok(after.bytesDown - before.bytesDown >= token.length, `bytes down counted: ${after.bytesDown - before.bytesDown}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('UDP ASSOCIATE (npm socks client)', () => {
    it('relays a datagram to a UDP echo server and the echo back, and only while the control connection lives', T, async () => {
      const udpEcho = await startUdpEchoServer();
      const local = dgram.createSocket('udp4');
      const stranger = dgram.createSocket('udp4');
      try {
        await new Promise<void>((r) => local.bind(0, '127.0.0.1', r));
        await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', r));
        const localPort = local.address().port;
        // createConnection takes only 'connect'; UDP ASSOCIATE is the event API of the same client
        const client = new SocksClient({
          proxy: { host: gw.socksHost, port: gw.socksPort, type: 5 },
          command: 'associate',
          destination: { host: '127.0.0.1', port: localPort },
          timeout: 10_000,
        });
        const info = await new Promise<{ socket: net.Socket; remoteHost?: { host: string; port: number } }>((resolve, reject) => {
          client.once('established', resolve);
          client.once('error', reject);
          client.connect();
        });
        info.socket.on('error', () => undefined);
        const relay = info.remoteHost!;
        assert.equal(relay.host, '127.0.0.1');
        assert.ok(relay.port > 0);

        const received: Buffer[] = [];
        local.on('message', (m) => received.push(m));
        const payload = Buffer.from(`datagram ${randomBytes(6).toString('hex')}`);
        const frame = SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: udpEcho.port }, data: payload });
        local.send(frame, relay.port, relay.host);
        await waitFor('the echo through the relay', () => received.length > 0, 5000);
        const back = SocksClient.parseUDPFrame(received[0]!);
        assert.equal(back.remoteHost.host, '127.0.0.1');
        assert.equal(back.remoteHost.port, udpEcho.port);
        assert.deepEqual(back.data, payload);
        assert.equal(udpEcho.received.length, 1);
        assert.notEqual(udpEcho.received[0]!.port, localPort, 'the echo server heard the relay, not the client');

        // a datagram from another port than the one the client named is not relayed: the client's
        // next datagram is echoed, the stranger's (sent before it) never reaches the echo server
        stranger.send(SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: udpEcho.port }, data: Buffer.from('not yours') }), relay.port, relay.host);
        await new Promise((r) => setTimeout(r, 50));
        local.send(frame, relay.port, relay.host);
        await waitFor('the second echo', () => received.length > 1, 5000);
        assert.deepEqual(
          udpEcho.received.map((d) => d.data.toString()),
          [payload.toString(), payload.toString()],
          'only the client\'s datagrams were relayed',
        );

        const listed = await gw.api<{ connections: ConnectionView[] }>('GET', '/api/v1/connections');
        assert.ok(listed.body.connections.some((c) => c.command === 'udp-associate'), `the association is listed: ${listed.text}`);

        // the association ends with its TCP control connection
        info.socket.destroy();
        await waitFor('the association to end', async () => !(await gw.api<{ connections: ConnectionView[] }>('GET', '/api/v1/connections')).body.connections.some((c) => c.command === 'udp-associate'), 5000);
        local.send(frame, relay.port, relay.host);
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(udpEcho.received.length, 2, 'nothing relayed after the control connection closed');
        assert.equal(received.length, 2);
      } finally {
        local.close();
        stranger.close();
        await udpEcho.close();
      }
    });

    it('does not relay a datagram to a --socks-deny destination', T, async () => {
      const denied = await startUdpEchoServer('127.0.0.2');
      const allowed = await startUdpEchoServer();
      const local = dgram.createSocket('udp4');
      let control: net.Socket | undefined;
      try {
        await new Promise<void>((r) => local.bind(0, '127.0.0.1', r));
        const client = new SocksClient({
          proxy: { host: gw.socksHost, port: gw.socksPort, type: 5 },
          command: 'associate',
          destination: { host: '127.0.0.1', port: local.address().port },
          timeout: 10_000,
        });
        const info = await new Promise<{ socket: net.Socket; remoteHost?: { host: string; port: number } }>((resolve, reject) => {
          client.once('established', resolve);
          client.once('error', reject);
          client.connect();
        });
        control = info.socket;
        control.on('error', () => undefined);
        const relay = info.remoteHost!;
        const received: Buffer[] = [];
        local.on('message', (m) => received.push(m));
        local.send(SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.2', port: denied.port }, data: Buffer.from('to the denied host') }), relay.port, relay.host);
        await new Promise((r) => setTimeout(r, 50));
        local.send(SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: allowed.port }, data: Buffer.from('to the allowed host') }), relay.port, relay.host);
        await waitFor('the allowed echo', () => received.length > 0, 5000);
        assert.equal(SocksClient.parseUDPFrame(received[0]!).data.toString(), 'to the allowed host');
        assert.equal(denied.received.length, 0, 'the denied destination got nothing');
        assert.equal(received.length, 1);
      } finally {
        control?.destroy();
        local.close();
        await denied.close();
        await allowed.close();
      }
    });
  });

  describe('BIND (npm socks client)', () => {
    interface BindSession {
      bound: Promise<{ host: string; port: number; socket: net.Socket }>;
      established: Promise<{ socket: net.Socket; remote: { host: string; port: number } }>;
      failed: Promise<Error>;
    }

    /** Starts a BIND naming `host` as the expected peer. */
    function bind(host: string): BindSession {
      const client = new SocksClient({
        proxy: { host: gw.socksHost, port: gw.socksPort, type: 5 },
        command: 'bind',
        destination: { host, port: 0 },
        timeout: 10_000,
      });
      const failed = new Promise<Error>((resolve) => client.once('error', resolve));
      const session: BindSession = {
        bound: new Promise((resolve, reject) => {
          client.once('bound', (info) => resolve({ ...info.remoteHost!, socket: info.socket }));
          void failed.then(reject);
        }),
        established: new Promise((resolve, reject) => {
          client.once('established', (info) => resolve({ socket: info.socket, remote: info.remoteHost! }));
          void failed.then(reject);
        }),
        failed,
      };
      session.bound.catch(() => undefined);
      session.established.catch(() => undefined);
      client.connect();
      return session;
    }

    it('announces a listening address, accepts the peer, and relays both ways', T, async () => {
      const b = bind('127.0.0.1');
      let peer: net.Socket | undefined;
      let sock: net.Socket | undefined;
      try {
        const at = await b.bound;
        sock = at.socket;
        assert.equal(at.host, '127.0.0.1');
        assert.ok(at.port > 0, 'first reply names a port');
        peer = await tcpConnect(at.host, at.port);
        const peerReader = new SocketReader(peer);
        const est = await b.established;
        est.socket.on('error', () => undefined);
        assert.equal(est.remote.port, peer.localPort, 'second reply names the peer that connected');
        const clientReader = new SocketReader(est.socket);
        peer.write('from the peer');
        assert.equal((await clientReader.read(13)).toString(), 'from the peer');
        est.socket.write('from the client');
        assert.equal((await peerReader.read(15)).toString(), 'from the client');
      } finally {
        peer?.destroy();
        sock?.destroy();
      }
    });

    it('passes on what the client sent before the peer connected', T, async () => {
      const b = bind('127.0.0.1');
      let peer: net.Socket | undefined;
      let sock: net.Socket | undefined;
      try {
        const at = await b.bound;
        sock = at.socket;
        sock.on('error', () => undefined);
        sock.write('early bytes;');
        await new Promise((r) => setTimeout(r, 200)); // they reach the gateway before the peer does
        peer = await tcpConnect(at.host, at.port);
        const peerReader = new SocketReader(peer);
        await b.established;
        sock.write('late bytes');
        assert.equal((await peerReader.read(22)).toString(), 'early bytes;late bytes', 'nothing the client sent was lost');
      } finally {
        peer?.destroy();
        sock?.destroy();
      }
    });

    it('takes the incoming connection only from the host named in the request', T, async () => {
      // an intruder from 127.0.0.1 while 127.0.0.3 is expected: second reply 2, intruder dropped
      const b = bind('127.0.0.3');
      let intruder: net.Socket | undefined;
      let sock: net.Socket | undefined;
      try {
        const at = await b.bound;
        sock = at.socket;
        intruder = await tcpConnect(at.host, at.port);
        const ir = new SocketReader(intruder);
        const err = await b.failed;
        assert.match(err.message, /NotAllowed|not allowed|Rejected/i, err.message);
        assert.equal((await ir.untilEnd(3000)).ended, true, 'the intruder was closed');
        assert.equal(ir.total, 0, 'the intruder got nothing');
      } finally {
        intruder?.destroy();
        sock?.destroy();
      }

      const ok = bind('127.0.0.3');
      let peer: net.Socket | undefined;
      try {
        const at = await ok.bound;
        sock = at.socket;
        peer = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host: at.host, port: at.port, localAddress: '127.0.0.3' }, () => resolve(s));
          s.once('error', reject);
        });
        const est = await ok.established;
        assert.equal(est.remote.host, '127.0.0.3');
        const r = new SocketReader(est.socket);
        peer.write('expected peer');
        assert.equal((await r.read(13)).toString(), 'expected peer');
      } finally {
        peer?.destroy();
        sock?.destroy();
      }
    });
  });

  describe('reply codes (raw SOCKS5 bytes)', () => {
    it('answers 5 (connection refused) for a closed port, then closes', T, async () => {
      const port = await closedPort();
      const before = await stats(gw);
      const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.1', port));
      assert.equal(rep, 0x05);
      assert.equal((await reader.untilEnd(3000)).ended, true, 'the connection is closed after the reply');
      const after = await stats(gw);
      assert.equal(after.failures.connection_refused ?? 0, (before.failures.connection_refused ?? 0) + 1);
    });

    it('answers 7 (command not supported) for command 0x09', T, async () => {
      const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.1', echo.port, 0x09));
      assert.equal(rep, 0x07);
      assert.equal((await reader.untilEnd(3000)).ended, true);
    });

    it('answers 8 (address type not supported) for address type 0x05', T, async () => {
      const { rep, reader } = await rawRequest(gw, Buffer.from([0x05, 0x01, 0x00, 0x05, 127, 0, 0, 1, 0, 80]));
      assert.equal(rep, 0x08);
      assert.equal((await reader.untilEnd(3000)).ended, true);
    });

    it('answers 4 (host unreachable) for a name that does not resolve', TN, async () => {
      const { rep, reader } = await rawRequest(gw, connectRequest('nonexistent.invalid', 80));
      assert.equal(rep, 0x04);
      assert.equal((await reader.untilEnd(3000)).ended, true);
      assert.ok(dns.queries.some((q) => q.endsWith(' nonexistent.invalid')), `the gateway asked its resolver (queries: ${dns.queries.join(', ')})`);
    });

    it('answers 2 (not allowed) for a destination in --socks-deny, without connecting to it', T, async () => {
      const denied = await startEchoServer('127.0.0.2');
      try {
        const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.2', denied.port));
        assert.equal(rep, 0x02);
        assert.equal((await reader.untilEnd(3000)).ended, true);
        assert.equal(denied.accepted.length, 0, 'the denied destination saw no connection');
      } finally {
        await denied.close();
      }
    });

    it('answers 2 (not allowed) to a BIND that expects its peer from a --socks-deny address', T, async () => {
      const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.2', 0, 0x02));
      assert.equal(rep, 0x02);
      assert.equal((await reader.untilEnd(3000)).ended, true);
    });

    it('answers 0 and relays for an allowed destination (the same raw client)', T, async () => {
      const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.1', echo.port));
      assert.equal(rep, 0x00);
      reader.socket.write('ping');
      assert.equal((await reader.read(4)).toString(), 'ping');
      reader.socket.destroy();
    });
  });

  describe('relay', () => {
    it('passes a half-close on: the client ends its side after sending and still gets the whole reply', T, async () => {
      const reply = randomBytes(512 * 1024);
      let got = Buffer.alloc(0);
      const server = await startTcpServer((s) => {
        const parts: Buffer[] = [];
        s.on('data', (d: Buffer) => parts.push(d));
        s.on('end', () => {
          got = Buffer.concat(parts);
          s.end(reply); // answers only after the client's FIN
        });
      });
      try {
        const sock = await socksConnect(gw, '127.0.0.1', server.port);
        const reader = new SocketReader(sock);
        const request = randomBytes(100_000);
        sock.end(request);
        const r = await reader.untilEnd(10_000);
        assert.equal(r.ended, true, 'the reply ended');
        assert.equal(r.data.length, reply.length, 'every byte of the reply arrived after the client half-closed');
        assert.equal(sha256(r.data), sha256(reply));
        assert.equal(sha256(got), sha256(request), 'the server got the whole request before the FIN');
      } finally {
        await server.close();
      }
    });

    it('passes a half-close the other way: after the server ends, the client can still send', T, async () => {
      let got = '';
      let gotAll!: () => void;
      const allReceived = new Promise<void>((resolve) => (gotAll = resolve));
      const server = await startTcpServer((s) => {
        s.end('bye from the server'); // the server's FIN comes first
        s.on('data', (d: Buffer) => {
          got += d.toString();
          if (got === 'the client was not done') gotAll();
        });
      });
      try {
        const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.1', server.port));
        assert.equal(rep, 0x00);
        const r = await reader.untilEnd(5000);
        assert.equal(r.ended, true, 'the server\'s FIN reached the client');
        assert.equal(r.data.toString(), 'bye from the server');
        reader.socket.write('the client was not done');
        await Promise.race([allReceived, new Promise((_, rej) => setTimeout(() => rej(new Error(`the server got only "${got}"`)), 5000))]);
        reader.socket.destroy();
      } finally {
        await server.close();
      }
    });

    it('counts the bytes relayed each way, not the SOCKS handshake', T, async () => {
      const server = await startTcpServer((s) => {
        let n = 0;
        s.on('data', (d: Buffer) => {
          n += d.length;
          if (n === 1000) s.end(Buffer.alloc(3000, 0x61));
        });
      });
      try {
        const before = await stats(gw);
        const { rep, reader } = await rawRequest(gw, connectRequest('127.0.0.1', server.port));
        assert.equal(rep, 0x00);
        reader.socket.end(Buffer.alloc(1000, 0x62));
        const r = await reader.untilEnd(5000);
        assert.equal(r.data.length, 3000);
        reader.socket.destroy();
        // this connection gone from the list (others of earlier tests may close meanwhile)
        await waitFor('the connection to close', async () => {
          const open = await gw.api<{ connections: ConnectionView[] }>('GET', '/api/v1/connections');
          return !open.body.connections.some((c) => c.destination.port === server.port);
        });
        const after = await stats(gw);
        assert.equal(after.bytesDown - before.bytesDown, 3000, 'bytes down: what the server sent');
        assert.equal(after.bytesUp - before.bytesUp, 1000, 'bytes up: what the client sent through, without its 13 handshake bytes');
      } finally {
        await server.close();
      }
    });

    it('keeps a long transfer intact while another client sends garbage and is dropped', T, async () => {
      const big = randomBytes(8 * 1024 * 1024);
      const server = await startTcpServer((s) => s.end(big));
      try {
        const a = await socksConnect(gw, '127.0.0.1', server.port);
        const chunks: Buffer[] = [];
        const firstChunk = new Promise<void>((resolve) => a.once('data', () => resolve()));
        a.on('data', (d: Buffer) => chunks.push(d));
        const aEnded = new Promise<void>((resolve) => a.once('end', () => resolve()));
        await firstChunk;
        a.pause(); // A's transfer is mid-way while B misbehaves

        // fixed bytes, never random ones: a random request could name a real destination
        const garbage = [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), Buffer.from('GARBAGE!'.repeat(8))]), Buffer.from([0x05, 0x00])];
        for (const g of garbage) {
          const b = await tcpConnect(gw.socksHost, gw.socksPort);
          const br = new SocketReader(b);
          b.write(g);
          const res = await br.untilEnd(5000);
          assert.equal(res.ended, true, `client B (${g.subarray(0, 8).toString('hex')}...) was dropped`);
          b.destroy();
        }

        a.resume();
        await Promise.race([aEnded, new Promise((_, rej) => setTimeout(() => rej(new Error('A did not finish')), 20_000))]);
        const all = Buffer.concat(chunks);
        assert.equal(all.length, big.length);
        assert.equal(sha256(all), sha256(big), 'A got every byte, in order');
        a.destroy();
      } finally {
        await server.close();
      }
    });
  });
});

describe('edgeward start --socks [::1]:0', () => {
  let gw: Gateway;
  let web: HttpPeer;
  const BODY = 'over IPv6 loopback\n';

  before(async () => {
    web = await startHttpServer(BODY, '::1');
    gw = await startGateway({ socks: '[::1]:0' });
  }, { timeout: 60_000 });

  after(async () => {
    await gw?.stop();
    await web?.close();
  });

  it('relays curl -x socks5h://[::1]:PORT to a server on ::1', T, async () => {
    assert.equal(gw.socksHost, '::1');
    const r = await curl(['-x', `socks5h://[::1]:${gw.socksPort}`, `http://[::1]:${web.port}/v6`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, BODY);
    assert.equal(web.requests.at(-1)?.url, '/v6');
    assert.equal((await stats(gw)).connectionsTotal, 1, 'through the gateway');
  });
});

describe('edgeward start --socks-auth', () => {
  let gw: Gateway;
  let web: HttpPeer;
  const BODY = 'authenticated\n';

  before(async () => {
    web = await startHttpServer(BODY);
    gw = await startGateway({ args: ['--socks-auth'] });
    const add = await gw.api('POST', '/api/v1/users', { username: 'alice', password: 'c0rrect-h0rse' });
    assert.equal(add.status, 201, add.text);
  }, { timeout: 60_000 });

  after(async () => {
    await gw?.stop();
    await web?.close();
  });

  const proxy = (): string => `${gw.socksHost}:${gw.socksPort}`;

  it('lets a user with the right password through', T, async () => {
    const r = await curl(['--socks5', proxy(), '--proxy-user', 'alice:c0rrect-h0rse', `http://127.0.0.1:${web.port}/ok`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, BODY);
  });

  it('refuses a wrong password (curl exit 97) and counts it', T, async () => {
    const before = await stats(gw);
    const served = web.requests.length;
    const r = await curl(['--socks5', proxy(), '--proxy-user', 'alice:wrong', `http://127.0.0.1:${web.port}/wrong`]);
    assert.equal(r.code, CURL_PROXY_ERROR, r.stderr);
    assert.match(r.stderr, /rejected/);
    assert.equal(r.stdout, '');
    assert.equal(web.requests.length, served, 'the server saw no request');
    assert.equal((await stats(gw)).authFailures, before.authFailures + 1);
  });

  it('refuses a user without SOCKS access (a rendezvous-only user) with the right password', T, async () => {
    const add = await gw.api('POST', '/api/v1/users', { username: 'dora', password: 'd0ra-pass', socks: false, rendezvous: true });
    assert.equal(add.status, 201, add.text);
    const served = web.requests.length;
    const r = await curl(['--socks5', proxy(), '--proxy-user', 'dora:d0ra-pass', `http://127.0.0.1:${web.port}/dora`]);
    assert.equal(r.code, CURL_PROXY_ERROR, r.stderr);
    assert.match(r.stderr, /rejected/);
    assert.equal(web.requests.length, served, 'the server saw no request');
  });

  it('refuses a client that offers no credentials', T, async () => {
    const served = web.requests.length;
    const r = await curl(['--socks5', proxy(), `http://127.0.0.1:${web.port}/none`]);
    assert.equal(r.code, CURL_PROXY_ERROR, r.stderr);
    assert.match(r.stderr, /No authentication method was acceptable/);
    assert.equal(r.stdout, '');
    assert.equal(web.requests.length, served);
  });

  it('refuses SOCKS4, which carries no password', T, async () => {
    const served = web.requests.length;
    const r = await curl(['--socks4', proxy(), `http://127.0.0.1:${web.port}/socks4`]);
    assert.equal(r.code, CURL_PROXY_ERROR, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /\(91\), request rejected/, 'SOCKS4 reply 91: request rejected');
    assert.equal(web.requests.length, served);
  });
});

describe('edgeward start --socks-allow 10.99.0.0/16', () => {
  let gw: Gateway;
  let echo: TcpPeer;

  before(async () => {
    echo = await startEchoServer();
    gw = await startGateway({ args: ['--socks-allow', '10.99.0.0/16'] });
  }, { timeout: 60_000 });

  after(async () => {
    await gw?.stop();
    await echo?.close();
  });

  it('closes a client from outside the list without any SOCKS reply', T, async () => {
    const before = await stats(gw);
    const s = await tcpConnect(gw.socksHost, gw.socksPort);
    const reader = new SocketReader(s);
    s.write(Buffer.from([0x05, 0x01, 0x00]));
    s.write(connectRequest('127.0.0.1', echo.port));
    const r = await reader.untilEnd(5000);
    assert.equal(r.ended, true, 'the connection was closed');
    assert.equal(r.data.length, 0, `no reply bytes (got ${r.data.toString('hex')})`);
    assert.equal(echo.accepted.length, 0, 'nothing was relayed');
    s.destroy();
    assert.equal((await stats(gw)).rejectedClients, before.rejectedClients + 1);
  });
});

describe('edgeward start --handshake-timeout 1', () => {
  let gw: Gateway;
  let echo: TcpPeer;

  before(async () => {
    echo = await startEchoServer();
    gw = await startGateway({ args: ['--handshake-timeout', '1'] });
  }, { timeout: 60_000 });

  after(async () => {
    await gw?.stop();
    await echo?.close();
  });

  it('disconnects a client that sends only the first byte', T, async () => {
    const s = await tcpConnect(gw.socksHost, gw.socksPort);
    const reader = new SocketReader(s);
    s.write(Buffer.from([0x05]));
    const r = await reader.untilEnd(6000);
    s.destroy();
    assert.equal(r.ended, true, 'disconnected');
    assert.ok(r.ms >= 700 && r.ms < 4000, `disconnected after ${r.ms} ms (timeout 1 s)`);
    assert.equal(r.data.length, 0);
    assert.equal((await stats(gw)).failures.handshake_timeout, 1);
  });

  it('does not apply to a connection whose handshake finished', T, async () => {
    const sock = await socksConnect(gw, '127.0.0.1', echo.port);
    const reader = new SocketReader(sock);
    await new Promise((r) => setTimeout(r, 1800));
    sock.write('still here');
    assert.equal((await reader.read(10)).toString(), 'still here');
    sock.destroy();
  });
});

describe('edgeward start: open-proxy refusal', () => {
  it('exits 2 naming the open proxy when SOCKS would listen on 0.0.0.0 without auth or allow list', T, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeward-open-'));
    try {
      const r = await runCmd([process.execPath, BIN, 'start', '--socks', '0.0.0.0:0', '--api', '127.0.0.1:0', '--data', dir, '--log-format', 'json'], { timeoutMs: 20_000 });
      assert.equal(r.timedOut, false, 'it exited by itself');
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /open proxy/);
      assert.match(r.stderr, /--allow-open-proxy/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts with --allow-open-proxy', T, async () => {
    const gw = await startGateway({ socks: '0.0.0.0:0', args: ['--allow-open-proxy'] });
    try {
      assert.equal(gw.socksHost, '0.0.0.0');
      assert.ok(gw.socksPort > 0);
    } finally {
      const code = await gw.stop();
      assert.equal(code, 0, gw.stderr());
    }
  });
});

describe('edgeward start: SIGTERM', () => {
  let echo: TcpPeer;

  before(async () => {
    echo = await startEchoServer();
  });

  after(async () => {
    await echo?.close();
  });

  /** Resolves with the exit and how long after `t0` it came; rejects after `limitMs`. */
  async function exitWithin(gw: Gateway, t0: number, limitMs: number): Promise<{ code: number | null; ms: number }> {
    const exit = await Promise.race([gw.exited, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`no exit within ${limitMs} ms of SIGTERM; log:\n${gw.stderr()}`)), limitMs))]);
    return { code: exit.code, ms: Date.now() - t0 };
  }

  it('refuses new connections, lets open ones drain for --shutdown-grace, then closes them and exits 0', T, async () => {
    const gw = await startGateway({ args: ['--shutdown-grace', '1.5'] });
    try {
      // several connections, so that every SOCKS thread (--workers auto) holds some
      const socks = await Promise.all(Array.from({ length: 8 }, () => socksConnect(gw, '127.0.0.1', echo.port)));
      const readers = socks.map((s) => new SocketReader(s));
      for (const [i, s] of socks.entries()) s.write(`before ${i}`);
      for (const [i, r] of readers.entries()) assert.equal((await r.read(`before ${i}`.length)).toString(), `before ${i}`);

      const t0 = Date.now();
      gw.signal('SIGTERM');
      await gw.waitForLog((l) => l.msg.startsWith('stopping'), 5000);

      await waitFor('the SOCKS port to refuse connections', async () => {
        try {
          (await tcpConnect(gw.socksHost, gw.socksPort, 1000)).destroy();
          return false;
        } catch (e) {
          return (e as NodeJS.ErrnoException).code === 'ECONNREFUSED';
        }
      }, 1000, 20);
      for (let i = 0; i < 3; i++) {
        await assert.rejects(tcpConnect(gw.socksHost, gw.socksPort, 1000), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED', 'no new connections while draining');
      }
      for (const [i, s] of socks.entries()) s.write(`draining ${i}`);
      for (const [i, r] of readers.entries()) assert.equal((await r.read(`draining ${i}`.length)).toString(), `draining ${i}`, 'open connections still relay');

      const exit = await exitWithin(gw, t0, 12_000);
      assert.equal(exit.code, 0, gw.stderr());
      assert.ok(exit.ms >= 1300, `exited after ${exit.ms} ms, not before the 1.5 s grace`);
      assert.ok(exit.ms < 4000, `exited ${exit.ms} ms after SIGTERM: the grace is 1.5 s; log:\n${gw.stderr()}`);
      for (const r of readers) assert.equal((await r.untilEnd(2000)).ended, true, 'the open connection was closed when the grace ended');
      for (const s of socks) s.destroy();
    } finally {
      await gw.stop();
    }
  });

  it('stops in order (exit 0) on a SIGTERM sent the moment it logs "listening"', { timeout: 60_000 }, async () => {
    // a supervisor or script that waits for the readiness line may signal right after it
    for (let i = 0; i < 12; i++) {
      const gw = await startGateway();
      gw.signal('SIGTERM');
      const exit = await gw.exited;
      await gw.stop();
      assert.deepEqual(exit, { code: 0, signal: null }, `attempt ${i + 1}: killed instead of stopped; log:\n${gw.stderr()}`);
      assert.ok(gw.logs().some((l) => l.msg === 'stopped'), gw.stderr());
    }
  });

  it('does not wait for a client stuck in the handshake beyond --shutdown-grace', T, async () => {
    const gw = await startGateway({ args: ['--shutdown-grace', '1', '--handshake-timeout', '30'] });
    const stuck: net.Socket[] = [];
    try {
      // one per SOCKS thread, most likely: each sends the version byte and nothing more
      for (let i = 0; i < 4; i++) {
        const s = await tcpConnect(gw.socksHost, gw.socksPort);
        s.write(Buffer.from([0x05]));
        stuck.push(s);
      }
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      gw.signal('SIGTERM');
      const exit = await exitWithin(gw, t0, 8000);
      assert.equal(exit.code, 0, gw.stderr());
      assert.ok(exit.ms < 3500, `exited ${exit.ms} ms after SIGTERM with a grace of 1 s; log:\n${gw.stderr()}`);
    } finally {
      for (const s of stuck) s.destroy();
      await gw.stop();
    }
  });
});

describe('edgeward start without EDGEWARD_API_TOKEN', () => {
  let gw: Gateway;

  before(async () => {
    gw = await startGateway({ token: null });
  }, { timeout: 60_000 });

  after(async () => {
    await gw?.stop();
  });

  it('generates DATA/api-token (0600), logs its path but never the token, and the token works', T, async () => {
    const file = join(gw.dataDir, 'api-token');
    const st = statSync(file);
    assert.equal(st.mode & 0o777, 0o600, `mode ${(st.mode & 0o777).toString(8)}`);
    const token = readFileSync(file, 'utf8').trim();
    assert.ok(token.length >= 32, 'a long random token');
    const line = gw.logs().find((l) => l.msg === 'generated API token');
    assert.ok(line, `a log line about the token; log:\n${gw.stderr()}`);
    assert.equal(line.file, file);
    assert.ok(!gw.stderr().includes(token), 'the token itself is never logged');

    assert.equal((await gw.api('GET', '/api/v1/stats')).status, 401, 'no token: refused');
    gw.token = 'not-the-token';
    assert.equal((await gw.api('GET', '/api/v1/stats')).status, 401, 'wrong token: refused');
    gw.token = token;
    const r = await gw.api<Stats>('GET', '/api/v1/stats');
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.body.connectionsTotal, 'number');
    assert.ok(!gw.stderr().includes(token), 'still not logged after use');
  });
});
