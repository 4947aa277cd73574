// Live policy changes on an open connection through the real program: the API changes the default
// policy or adds one while a client holds a connection open, and the kernel's own view of the
// gateway's outgoing socket (ss -tin, run as a separate program) shows the new congestion control;
// GET /api/v1/connections shows Nagle and keepalive as read back from the socket.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { SocketReader, startEchoServer, type TcpPeer } from '../helpers/peers.js';
import { assertBuilt, requirement } from '../helpers/requirements.js';
import { runCmd } from '../helpers/process.js';

const T = { timeout: 30_000 };

const AVAILABLE = readFileSync('/proc/sys/net/ipv4/tcp_available_congestion_control', 'latin1').trim().split(/\s+/);
const KERNEL_DEFAULT = readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'latin1').trim();
/** a congestion control other than the kernel default: reno unless that is the default */
const OTHER = KERNEL_DEFAULT === 'reno' ? AVAILABLE.find((c) => c !== 'reno') : 'reno';

interface KeepAlive {
  idle: number;
  interval: number;
  count: number;
}

interface ConnectionView {
  id: number;
  command: string;
  destination: { host?: string; address: string; port: number };
  policyId: number | null;
  inEffect: { congestion?: string; noDelay?: boolean; keepAlive?: KeepAlive | false } | null;
}

interface LiveUpdate {
  connectionsUpdated: number;
  notes: string[];
}

interface ErrorBody {
  error: { code: string; message: string; field: string | null; available?: string[] };
}

/** What the kernel shows for the gateway's socket toward `port`: owner pid, congestion control, keepalive timer. */
async function ssOutgoing(port: number): Promise<{ pid: number | null; congestion: string; keepaliveTimer: boolean; raw: string }> {
  const r = await runCmd(['ss', '-tinpoH', 'state', 'established', `( dport = :${port} )`], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
  const sockets = lines.filter((l) => !/^\s/.test(l));
  assert.equal(sockets.length, 1, `exactly one socket toward port ${port}:\n${r.stdout}`);
  const info = lines.find((l) => /^\s/.test(l));
  assert.ok(info, `ss -i printed the TCP info line:\n${r.stdout}`);
  // the info line starts with the TCP options (ts, sack, ecn, ...), then the congestion control's name
  const congestion = info.trim().split(/\s+/).find((t) => AVAILABLE.includes(t)) ?? `(none in: ${info.trim()})`;
  const pid = /pid=(\d+)/.exec(sockets[0]!);
  return { pid: pid ? Number(pid[1]) : null, congestion, keepaliveTimer: /timer:\(keepalive/.test(sockets[0]!), raw: r.stdout };
}

describe('live policy changes on open connections (real program, ss)', () => {
  let gw: Gateway;
  let echo: TcpPeer;
  const open: net.Socket[] = [];

  before(
    async () => {
      assertBuilt();
      echo = await startEchoServer();
      gw = await startGateway();
    },
    { timeout: 60_000 },
  );

  after(async () => {
    for (const s of open) s.destroy();
    await gw?.stop();
    await echo?.close();
  });

  beforeEach(async () => {
    for (const s of open.splice(0)) s.destroy();
    const r = await gw.api('PUT', '/api/v1/policies/default', {});
    assert.equal(r.status, 200, r.text);
    const list = await gw.api<{ policies: Array<{ id: number }> }>('GET', '/api/v1/policies');
    for (const p of list.body.policies) assert.equal((await gw.api('DELETE', `/api/v1/policies/${p.id}`)).status, 204);
  });

  /** A connection through the gateway to the echo server, held open by this client; checked with one echo. */
  async function holdConnection(): Promise<{ socket: net.Socket; reader: SocketReader }> {
    const { socket } = await SocksClient.createConnection({
      proxy: { host: gw.socksHost, port: gw.socksPort, type: 5 },
      command: 'connect',
      destination: { host: '127.0.0.1', port: echo.port },
      timeout: 10_000,
    });
    socket.on('error', () => undefined);
    open.push(socket);
    const reader = new SocketReader(socket);
    socket.write('hello');
    assert.equal((await reader.read(5)).toString(), 'hello');
    return { socket, reader };
  }

  async function ourConnection(): Promise<ConnectionView> {
    const r = await gw.api<{ total: number; connections: ConnectionView[] }>('GET', '/api/v1/connections');
    assert.equal(r.status, 200, r.text);
    const mine = r.body.connections.filter((c) => c.destination.port === echo.port && c.command === 'connect');
    assert.equal(mine.length, 1, `one open connection to the echo server: ${r.text}`);
    return mine[0]!;
  }

  const NEEDS_TWO = { ...T, skip: requirement(!OTHER && `the kernel offers one congestion control only (${AVAILABLE.join(' ')}): nothing to switch to`) };

  it(`switches the congestion control of an open connection (${KERNEL_DEFAULT} -> ${OTHER}) when the default policy changes`, NEEDS_TWO, async () => {
    const { socket, reader } = await holdConnection();

    const before = await ssOutgoing(echo.port);
    assert.equal(before.pid, gw.pid, `the socket toward the server is the gateway's:\n${before.raw}`);
    assert.equal(before.congestion, KERNEL_DEFAULT, `before the change: the kernel default\n${before.raw}`);

    const r = await gw.api<{ congestion?: string; liveUpdate: LiveUpdate }>('PUT', '/api/v1/policies/default', { congestion: OTHER });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.congestion, OTHER);
    assert.ok(r.body.liveUpdate.connectionsUpdated >= 1, `liveUpdate counts the open connection: ${r.text}`);

    const afterChange = await ssOutgoing(echo.port);
    assert.equal(afterChange.congestion, OTHER, `ss shows the new congestion control on the live socket:\n${afterChange.raw}`);
    assert.equal((await ourConnection()).inEffect?.congestion, OTHER, 'the API reads the same back from the kernel');

    socket.write('still relaying');
    assert.equal((await reader.read(14)).toString(), 'still relaying', 'the connection was not disturbed');
  });

  it('applies a new policy matching 127.0.0.1 to an open connection, and its removal puts the kernel default back', NEEDS_TWO, async () => {
    await holdConnection();
    assert.equal((await ssOutgoing(echo.port)).congestion, KERNEL_DEFAULT);

    const created = await gw.api<{ id: number; liveUpdate: LiveUpdate }>('POST', '/api/v1/policies', { match: { cidr: '127.0.0.1/32', port: echo.port }, transport: { congestion: OTHER } });
    assert.equal(created.status, 201, created.text);
    assert.ok(created.body.liveUpdate.connectionsUpdated >= 1, created.text);
    const withPolicy = await ssOutgoing(echo.port);
    assert.equal(withPolicy.congestion, OTHER, withPolicy.raw);
    assert.equal((await ourConnection()).policyId, created.body.id, 'the connection is now governed by the new policy');

    assert.equal((await gw.api('DELETE', `/api/v1/policies/${created.body.id}`)).status, 204);
    const removed = await ssOutgoing(echo.port);
    assert.equal(removed.congestion, KERNEL_DEFAULT, `back to the kernel default after the policy is removed:\n${removed.raw}`);
    assert.equal((await ourConnection()).policyId, null);
  });

  it('turns Nagle off and keepalive on for an open connection, and back', T, async () => {
    await holdConnection();
    const initial = await ourConnection();
    assert.equal(initial.inEffect?.noDelay, false, 'Nagle on by default');
    assert.equal(initial.inEffect?.keepAlive, false, 'no keepalive by default');
    assert.equal((await ssOutgoing(echo.port)).keepaliveTimer, false);

    const keepAlive = { idle: 30, interval: 5, count: 3 };
    const r = await gw.api<{ liveUpdate: LiveUpdate }>('PUT', '/api/v1/policies/default', { noDelay: true, keepAlive });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.liveUpdate.connectionsUpdated >= 1, r.text);
    const on = await ourConnection();
    assert.equal(on.inEffect?.noDelay, true, 'TCP_NODELAY read back from the socket');
    assert.deepEqual(on.inEffect?.keepAlive, keepAlive, 'keepalive read back from the socket');
    const ss = await ssOutgoing(echo.port);
    assert.equal(ss.keepaliveTimer, true, `the kernel runs a keepalive timer on the socket:\n${ss.raw}`);

    const back = await gw.api<{ liveUpdate: LiveUpdate }>('PUT', '/api/v1/policies/default', {});
    assert.equal(back.status, 200, back.text);
    assert.ok(back.body.liveUpdate.connectionsUpdated >= 1, back.text);
    const off = await ourConnection();
    assert.equal(off.inEffect?.noDelay, false);
    assert.equal(off.inEffect?.keepAlive, false);
  });

  it('refuses a congestion control the kernel lacks with 422 listing the available ones, and changes nothing', T, async () => {
    await holdConnection();
    const put = await gw.api<ErrorBody>('PUT', '/api/v1/policies/default', { congestion: 'nonexistent' });
    assert.equal(put.status, 422, put.text);
    assert.deepEqual(put.body.error.available, AVAILABLE, 'error.available is the kernel\'s list');
    assert.match(put.body.error.message, /nonexistent/);

    const post = await gw.api<ErrorBody>('POST', '/api/v1/policies', { match: { cidr: '127.0.0.1/32' }, transport: { congestion: 'nonexistent' } });
    assert.equal(post.status, 422, post.text);
    assert.deepEqual(post.body.error.available, AVAILABLE);

    assert.deepEqual((await gw.api('GET', '/api/v1/policies/default')).body, {}, 'the default policy is unchanged');
    assert.deepEqual((await gw.api<{ policies: unknown[] }>('GET', '/api/v1/policies')).body.policies, [], 'no policy was created');
    assert.equal((await ssOutgoing(echo.port)).congestion, KERNEL_DEFAULT, 'the open connection is untouched');
  });
});
