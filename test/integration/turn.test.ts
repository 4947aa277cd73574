// TURN over UDP (edgeward start --turn ... --turn-secret) against coturn's own clients:
// turnutils_uclient relays through edgeward to turnutils_peer with channels and with Send
// indications; REST credentials from the API work, expired or wrongly signed ones do not; the
// default peer denylist refuses loopback peers (403); allocations are listed and can be ended.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { startProcess, runCmd, type RunningProcess } from '../helpers/process.js';
import { closedPort } from '../helpers/peers.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { assertAllEchoed, metric, startTurnPeer, turnPort } from '../helpers/turn.js';

const skip = requirement(missingPrograms(['turnutils_uclient', 'turnutils_peer']));
if (skip) process.stdout.write(`# skipping the TURN interoperability tests: ${skip}\n`);

const SECRET = 'turn-test-secret';

/** turnutils_uclient: 20 messages of 100 bytes through the TURN server to the peer and back. */
function uclient(port: number, peerPort: number, auth: string[], extra: string[] = [], peerIp = '127.0.0.1'): ReturnType<typeof runCmd> {
  return runCmd(['turnutils_uclient', ...extra, '-e', peerIp, '-r', String(peerPort), ...auth, '-n', '20', '-m', '1', '-l', '100', '-p', String(port), '127.0.0.1'], { timeoutMs: 40_000 });
}

describe('TURN over UDP with coturn\'s clients', { skip }, () => {
  let g: Gateway;
  let port = 0;
  let peerPort = 0;
  let peer: RunningProcess;
  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET, '--turn-allow-peers', '127.0.0.0/8'] });
    port = await turnPort(g);
    ({ port: peerPort, peer } = await startTurnPeer());
  });
  after(async () => {
    await peer?.stop();
    await g?.stop();
  });

  it('relays through channels (turnutils_uclient default mode) with nothing lost', async () => {
    const r = await uclient(port, peerPort, ['-W', SECRET, '-u', 'alice']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('relays through Send and Data indications (-s) with nothing lost', async () => {
    const r = await uclient(port, peerPort, ['-W', SECRET, '-u', 'alice'], ['-s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('relays with TURN over TCP (-t: the client talks TCP to the server, the relay is UDP) with nothing lost', async () => {
    const r = await uclient(port, peerPort, ['-W', SECRET, '-u', 'alice'], ['-t']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('relays between two allocations on this same server (-y: relay to relay) with nothing lost', async () => {
    const r = await runCmd(['turnutils_uclient', '-y', '-W', SECRET, '-u', 'alice', '-n', '20', '-m', '1', '-l', '100', '-p', String(port), '127.0.0.1'], { timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('lists the allocations uclient left open with their user, ends one on DELETE, and counts the bytes of those that ended', async () => {
    const list = await g.api<{ allocations: Array<{ id: number; user: string; bytes: { up: number; down: number }; relayed: { port: number } }> }>('GET', '/api/v1/turn/allocations');
    assert.equal(list.status, 200, list.text);
    const mine = list.body.allocations.filter((a) => a.user === 'alice');
    // uclient ends the allocations it relayed through (Refresh with LIFETIME 0) and leaves the others
    assert.ok(mine.length >= 1, list.text);
    const gone = await g.api('DELETE', `/api/v1/turn/allocations/${mine[0]!.id}`);
    assert.equal(gone.status, 204, gone.text);
    const after = await g.api<{ allocations: Array<{ id: number }> }>('GET', '/api/v1/turn/allocations');
    assert.ok(!after.body.allocations.some((a) => a.id === mine[0]!.id));
    assert.equal((await g.api('DELETE', `/api/v1/turn/allocations/${mine[0]!.id}`)).status, 404);
    const m = (await g.api<string>('GET', '/metrics')).text;
    assert.ok(metric(m, 'edgeward_turn_relayed_bytes_total{direction="up"}') >= 4000, m);
    assert.ok(metric(m, 'edgeward_turn_allocations_total') >= 4, m);
  });

  it('issues REST credentials over the API that turnutils_uclient can use as a long-term user', async () => {
    const c = await g.api<{ username: string; password: string; ttl: number; uris: string[] }>('POST', '/api/v1/turn/credentials', { user: 'bob', ttl: 600 });
    assert.equal(c.status, 200, c.text);
    assert.match(c.body.username, /^\d+:bob$/);
    assert.deepEqual(c.body.uris, [`turn:127.0.0.1:${port}?transport=udp`, `turn:127.0.0.1:${port}?transport=tcp`]);
    const r = await uclient(port, peerPort, ['-u', c.body.username, '-w', c.body.password]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /Total lost packets 0 /);
    const bad = await g.api('POST', '/api/v1/turn/credentials', { user: 'a:b' });
    assert.equal(bad.status, 400, bad.text);
  });

  it('edgeward turn credentials|allocations|end do the same from the command line', async () => {
    const env = { ...process.env, EDGEWARD_API_URL: g.apiUrl, EDGEWARD_API_TOKEN: g.token ?? '' };
    const cred = await runCmd([process.execPath, BIN, 'turn', 'credentials', 'dave', '--ttl', '300', '--json'], { env });
    assert.equal(cred.code, 0, cred.stderr);
    const c = JSON.parse(cred.stdout) as { username: string; password: string; ttl: number };
    assert.match(c.username, /^\d+:dave$/);
    assert.equal(c.ttl, 300);
    const r = await uclient(port, peerPort, ['-u', c.username, '-w', c.password]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const table = await runCmd([process.execPath, BIN, 'turn', 'allocations'], { env });
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((l) => /\sdave\s/.test(l));
    assert.ok(row, table.stdout);
    const id = row.trim().split(/\s+/)[0]!;
    const ended = await runCmd([process.execPath, BIN, 'turn', 'end', id], { env });
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal((await runCmd([process.execPath, BIN, 'turn', 'end', id], { env })).code, 1, 'ending it twice is a failure (404)');
    assert.equal((await runCmd([process.execPath, BIN, 'turn', 'credentials'], { env })).code, 2, 'a missing USER is a usage error');
  });

  it('refuses an expired credential and one signed with another secret: no allocation, counted', async () => {
    const before = (await g.api<string>('GET', '/metrics')).text;
    const username = `${Math.floor(Date.now() / 1000) - 10}:carol`;
    const password = createHmac('sha1', SECRET).update(username).digest('base64');
    const expired = await uclient(port, peerPort, ['-u', username, '-w', password]);
    assert.notEqual(expired.code, 0, 'an expired credential must not allocate');
    const wrong = await uclient(port, peerPort, ['-W', 'not-the-secret', '-u', 'mallory']);
    assert.notEqual(wrong.code, 0, 'a credential made with another secret must not allocate');
    const afterM = (await g.api<string>('GET', '/metrics')).text;
    assert.equal(metric(afterM, 'edgeward_turn_allocations_total'), metric(before, 'edgeward_turn_allocations_total'));
    assert.ok(metric(afterM, 'edgeward_turn_auth_failures_total') >= metric(before, 'edgeward_turn_auth_failures_total') + 2, afterM);
  });
});

describe('TURN peers: the default denylist', { skip }, () => {
  let g: Gateway;
  let port = 0;
  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET] });
    port = await turnPort(g);
  });
  after(async () => {
    await g?.stop();
  });

  it('refuses a loopback peer with 403 (no SSRF into the server\'s own network)', async () => {
    const peerPort = await closedPort();
    // 127.0.0.2: loopback, but not the relay address (which only reaches relayed ports, below)
    const r = await uclient(port, peerPort, ['-W', SECRET, '-u', 'alice'], [], '127.0.0.2');
    assert.notEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /403/);
    const m = (await g.api<string>('GET', '/metrics')).text;
    assert.ok(metric(m, 'edgeward_turn_denied_peers_total') >= 1, m);
  });

  it('still relays between two allocations on this server (-y), though the relay address is loopback', async () => {
    const r = await runCmd(['turnutils_uclient', '-y', '-W', SECRET, '-u', 'alice', '-n', '20', '-m', '1', '-l', '100', '-p', String(port), '127.0.0.1'], { timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('lets the relay address reach relayed ports only: a service on the server\'s own address gets nothing', async () => {
    // turnutils_peer on 127.0.0.1 is a UDP echo service on the relay's own address, not an allocation
    const peerPort = await closedPort();
    const echo = startProcess(['turnutils_peer', '-p', String(peerPort), '-L', '127.0.0.1']);
    try {
      await new Promise((res) => setTimeout(res, 300));
      const r = await uclient(port, peerPort, ['-W', SECRET, '-u', 'alice'], [], '127.0.0.1');
      const out = r.stdout + r.stderr;
      assert.doesNotMatch(out, /403|Cannot complete Allocation/, 'allocated, with a permission for the relay address');
      assert.match(out, /tot_send_msgs=[1-9]\d*, tot_recv_msgs=0\b/, out);
    } finally {
      await echo.stop();
    }
  });
});
