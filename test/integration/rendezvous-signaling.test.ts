// The rendezvous accounts and signaling of `edgeward start --turn`, with real WebSocket clients (ws):
// users log in with name and password and get a session token; devices keep a presence connection
// with their device token; a client lists its user's devices and opens a session to one, and the
// server relays offer, answer and candidates between exactly those two. What users notice: another
// user's device cannot be reached or even seen, a bad frame gets an error frame and disturbs no one,
// a device that reconnects keeps its identity while its old sessions end with a reason, and a
// device that goes away ends its sessions at once.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { SignalClient, type Frame } from '../helpers/signal.js';

const SECRET = 'signal-secret';

describe('rendezvous: accounts and signaling', () => {
  let g: Gateway;
  const tokens: Record<string, string> = {};
  const ids: Record<string, number> = {};
  const open: SignalClient[] = [];

  /** POST /api/v1/rendezvous/login from `from` (failed logins are budgeted per source address) */
  const login = (username: string, password: string, from = '127.0.0.1'): Promise<{ status: number; body: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ username, password });
      const req = http.request(`${g.apiUrl}/api/v1/rendezvous/login`, { method: 'POST', localAddress: from, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
      });
      req.on('error', reject);
      req.end(body);
    });
  const session = async (user: string): Promise<string> => {
    const r = await login(user, `${user}-password`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.token as string;
  };
  const connect = async (opts: { autoPong?: boolean } = {}): Promise<SignalClient> => {
    const c = await SignalClient.open(g.apiUrl, opts);
    open.push(c);
    return c;
  };
  const device = async (name: string, opts: { autoPong?: boolean } = {}): Promise<SignalClient> => {
    const d = await connect(opts);
    const w = await d.hello({ role: 'device', token: tokens[name]! });
    assert.equal(w.type, 'welcome', JSON.stringify(w));
    return d;
  };
  const client = async (user: string): Promise<SignalClient> => {
    const c = await connect();
    const w = await c.hello({ role: 'client', session: await session(user) });
    assert.equal(w.type, 'welcome', JSON.stringify(w));
    return c;
  };
  /** an offer from `from` in `session` reaches `to` with its SDP */
  const assertRelays = async (from: SignalClient, to: SignalClient, session: string, sdp: string): Promise<void> => {
    const got = to.nextOfType('offer');
    from.send({ type: 'offer', session, sdp });
    assert.equal((await got).sdp, sdp);
  };
  /** opens a session from `c` to device `name`: the client's "opened" and the device's "session" */
  const openSession = async (c: SignalClient, d: SignalClient, name: string): Promise<{ opened: Frame; offered: Frame }> => {
    const offered = d.nextOfType('session');
    const at = c.frames.length;
    c.send({ type: 'open', device: name, ref: 'r1' });
    const opened = await c.next((f) => f.type === 'opened' || f.type === 'error', 5000, at);
    assert.equal(opened.type, 'opened', JSON.stringify(opened));
    return { opened, offered: await offered };
  };

  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET, '--login-rate', '3', '--rendezvous-ping', '1'] });
    for (const [user, rendezvous] of [
      ['alice', true],
      ['bob', true],
      ['carol', false],
    ] as const) {
      const r = await g.api('POST', '/api/v1/users', { username: user, password: `${user}-password`, rendezvous });
      assert.equal(r.status, 201, r.text);
    }
    for (const [user, name] of [
      ['alice', 'box'],
      ['alice', 'nas'],
      ['bob', 'router'],
    ] as const) {
      const r = await g.api<{ device: { id: number }; token: string }>('POST', '/api/v1/devices', { user, name });
      assert.equal(r.status, 201, r.text);
      tokens[name] = r.body.token;
      ids[name] = r.body.device.id;
    }
  });
  after(async () => {
    for (const c of open) c.close();
    await g?.stop();
  });

  it('logs a user in with name and password; a wrong password, a user without rendezvous access and the API token are refused', async () => {
    const ok = await login('alice', 'alice-password');
    assert.equal(ok.status, 200);
    assert.match(String(ok.body.token), /^ews_[A-Za-z0-9_-]{43}$/);
    assert.ok(Date.parse(String(ok.body.expiresAt)) > Date.now() + 3000 * 1000, 'an hour by default');
    assert.equal((await login('alice', 'wrong')).status, 401);
    const carol = await login('carol', 'carol-password');
    assert.equal(carol.status, 401, 'carol has no rendezvous access');
    assert.equal(carol.body.error && (carol.body.error as { code: string }).code, 'wrong_credentials');
    const mine = await fetch(`${g.apiUrl}/api/v1/rendezvous/devices`, { headers: { authorization: `Bearer ${String(ok.body.token)}` } });
    assert.equal(mine.status, 200);
    assert.deepEqual(((await mine.json()) as { devices: Array<{ name: string; online: boolean }> }).devices.map((d) => [d.name, d.online]), [
      ['box', false],
      ['nas', false],
    ]);
    const withApiToken = await fetch(`${g.apiUrl}/api/v1/rendezvous/devices`, { headers: { authorization: `Bearer ${g.token}` } });
    assert.equal(withApiToken.status, 401, 'the API token is not a session');
  });

  it('limits failed logins per source (--login-rate 3): then 429, even for the right password', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await login('bob', `guess-${i}`, '127.0.0.5')).status);
    const right = await login('bob', 'bob-password', '127.0.0.5');
    assert.deepEqual([...codes, right.status], [401, 401, 401, 429, 429]);
    assert.equal((await login('bob', 'bob-password', '127.0.0.6')).status, 200, 'another source is not held back');
  });

  it('pairs a client with its own device: offer, answer and candidates cross between exactly those two, with TURN credentials for both', async () => {
    const box = await device('box');
    const alice = await client('alice');
    alice.send({ type: 'devices' });
    const list = await alice.nextOfType('devices');
    assert.deepEqual((list.devices as Array<{ name: string; online: boolean }>).map((d) => [d.name, d.online]), [
      ['box', true],
      ['nas', false],
    ]);
    const { opened, offered } = await openSession(alice, box, 'box');
    assert.equal(opened.ref, 'r1');
    assert.equal(offered.session, opened.session);
    assert.equal(offered.user, 'alice');
    for (const f of [opened, offered]) {
      const turn = (f.iceServers as Array<{ urls: string[]; username?: string; credential?: string }>).find((s) => s.username);
      assert.ok(turn && /^\d+:alice$/.test(turn.username!) && turn.credential && turn.urls.some((u) => u.startsWith('turn:')), JSON.stringify(f.iceServers));
    }
    const sid = opened.session as string;
    await assertRelays(alice, box, String(sid), 'v=0 offer-from-alice');
    const gotAnswer = alice.nextOfType('answer');
    box.send({ type: 'answer', session: sid, sdp: 'v=0 answer-from-box' });
    assert.equal((await gotAnswer).sdp, 'v=0 answer-from-box');
    const gotCandidate = alice.nextOfType('candidate');
    box.send({ type: 'candidate', session: sid, candidate: { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 } });
    assert.deepEqual((await gotCandidate).candidate, { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 });
    const ended = box.nextOfType('closed');
    alice.send({ type: 'close', session: sid, reason: 'done' });
    const e = await ended;
    assert.equal(e.reason, 'peer_closed');
    assert.equal(e.detail, 'done');
    alice.send({ type: 'offer', session: sid, sdp: 'v=0 late' });
    assert.equal((await alice.nextOfType('error')).code, 'no_such_session');
  });

  it("keeps users apart: bob cannot open, see or signal into alice's device or session", async () => {
    const box = await device('box');
    const alice = await client('alice');
    const bob = await client('bob');
    const { opened } = await openSession(alice, box, 'box');
    bob.send({ type: 'open', device: 'box' });
    const refused = await bob.nextOfType('error');
    assert.equal(refused.code, 'no_such_device', 'as unknown as a device that does not exist');
    bob.send({ type: 'devices' });
    assert.deepEqual(((await bob.nextOfType('devices')).devices as Array<{ name: string }>).map((d) => d.name), ['router']);
    const before = box.frames.length;
    bob.send({ type: 'offer', session: opened.session, sdp: 'v=0 from-bob' });
    bob.send({ type: 'close', session: opened.session });
    assert.equal((await bob.nextOfType('error')).code, 'no_such_session');
    // alice's session still works, and nothing of bob's reached the device
    await assertRelays(alice, box, String(opened.session), 'v=0 from-alice');
    assert.ok(!box.frames.slice(before).some((f) => JSON.stringify(f).includes('from-bob')), 'bob reached the device');
    const bobDevice = await connect();
    const w = await bobDevice.hello({ role: 'device', token: 'ewd_notatoken' });
    assert.equal(w.code, 'unauthorized');
    assert.equal((await bobDevice.closed).code, 4401);
  });

  it('answers malformed, unknown, unauthenticated and oversized frames without disturbing other sessions', async () => {
    const box = await device('box');
    const alice = await client('alice');
    const { opened } = await openSession(alice, box, 'box');
    const rogue = await connect();
    rogue.send({ type: 'devices' });
    assert.equal((await rogue.nextOfType('error')).code, 'not_authenticated');
    rogue.send('{not json');
    assert.equal((await rogue.nextOfType('error')).code, 'bad_message');
    rogue.send({ type: 'teleport' });
    const unknown = await rogue.nextOfType('error');
    assert.equal(unknown.code, 'unknown_type');
    assert.match(String(unknown.message), /teleport/);
    alice.send({ type: 'offer', session: opened.session, sdp: 42 });
    const bad = await alice.nextOfType('error');
    assert.equal(bad.code, 'bad_message');
    assert.match(String(bad.message), /\/sdp/, 'names the field');
    alice.send({ type: 'offer', session: opened.session, sdp: 'x', extra: true });
    assert.equal((await alice.nextOfType('error')).code, 'bad_message');
    // over the 64 KiB frame limit: that connection is closed (1009), alice's session goes on
    const big = await connect();
    big.send(JSON.stringify({ type: 'hello', role: 'client', session: 'x'.repeat(70_000) }));
    assert.equal((await big.closed).code, 1009);
    await assertRelays(alice, box, String(opened.session), 'v=0 still-here');
  });

  it('rate-limits a flooding connection and closes it past the bound; its neighbours are not slowed', async () => {
    const box = await device('box');
    const alice = await client('alice');
    const { opened } = await openSession(alice, box, 'box');
    const flood = await client('bob');
    for (let i = 0; i < 1300; i++) flood.send({ type: 'devices' });
    const limited = await flood.next((f) => f.type === 'error' && f.code === 'rate_limited');
    assert.match(String(limited.message), /frames a second/);
    assert.equal((await flood.closed).code, 4429);
    await assertRelays(alice, box, String(opened.session), 'v=0 after-flood');
  });

  it('a device that reconnects keeps its identity; its old connection and sessions end with a reason', async () => {
    const first = await device('nas');
    const alice = await client('alice');
    const { opened } = await openSession(alice, first, 'nas');
    const ended = alice.next((f) => f.type === 'closed' && f.session === opened.session);
    const second = await device('nas');
    assert.equal((await first.closed).code, 4409);
    assert.equal((await ended).reason, 'device_reconnected');
    const welcome = second.frames.find((f) => f.type === 'welcome')!;
    assert.deepEqual(welcome.device, { id: ids.nas, name: 'nas' });
    const again = await openSession(alice, second, 'nas');
    assert.notEqual(again.opened.session, opened.session);
  });

  it('a device that goes away ends its sessions at once, shows offline, and works again when it is back', async () => {
    const box = await device('box');
    const alice = await client('alice');
    const { opened } = await openSession(alice, box, 'box');
    const ended = alice.next((f) => f.type === 'closed' && f.session === opened.session);
    const offline = alice.next((f) => f.type === 'presence' && f.online === false && (f.device as { name: string }).name === 'box');
    box.ws.terminate();
    assert.equal((await ended).reason, 'device_offline');
    await offline;
    alice.send({ type: 'open', device: 'box' });
    assert.equal((await alice.nextOfType('error')).code, 'device_offline');
    const back = await device('box');
    await openSession(alice, back, 'box');
  });

  it('a device that stops answering pings (--rendezvous-ping 1) is dropped within two intervals; its sessions end, a client that answers stays', async () => {
    const mute = await device('nas', { autoPong: false });
    const alice = await client('alice');
    const { opened } = await openSession(alice, mute, 'nas');
    const t0 = Date.now();
    const ended = await alice.next((f) => f.type === 'closed' && f.session === opened.session, 6000);
    const ms = Date.now() - t0;
    assert.equal(ended.reason, 'device_offline');
    assert.ok(ms < 3500, `dropped ${ms} ms after the session opened (two 1 s intervals and a margin)`);
    await mute.closed;
    // alice answered every ping meanwhile: still connected, and she sees nas offline
    assert.equal(alice.ws.readyState, alice.ws.OPEN);
    const listed = alice.nextOfType('devices');
    alice.send({ type: 'devices' });
    const list = (await listed).devices as Array<{ name: string; online: boolean }>;
    assert.equal(list.find((d) => d.name === 'nas')?.online, false);
  });

  it('removing a device closes its presence connection (4410) and its token stops working', async () => {
    const r = await g.api<{ device: { id: number }; token: string }>('POST', '/api/v1/devices', { user: 'bob', name: 'temp' });
    tokens.temp = r.body.token;
    const temp = await device('temp');
    assert.equal((await g.api('DELETE', `/api/v1/devices/${r.body.device.id}`)).status, 204);
    assert.equal((await temp.closed).code, 4410);
    const again = await connect();
    assert.equal((await again.hello({ role: 'device', token: tokens.temp })).code, 'unauthorized');
  });

  it("removing a user closes their client and device connections (4410) and ends their logins", async () => {
    assert.equal((await g.api('POST', '/api/v1/users', { username: 'dave', password: 'dave-password', rendezvous: true })).status, 201);
    const r = await g.api<{ token: string }>('POST', '/api/v1/devices', { user: 'dave', name: 'davebox' });
    tokens.davebox = r.body.token;
    const davebox = await device('davebox');
    const token = await session('dave');
    const dave = await connect();
    assert.equal((await dave.hello({ role: 'client', session: token })).type, 'welcome');
    assert.equal((await g.api('DELETE', '/api/v1/users/dave')).status, 204);
    assert.equal((await dave.closed).code, 4410);
    assert.equal((await davebox.closed).code, 4410);
    const mine = await fetch(`${g.apiUrl}/api/v1/rendezvous/devices`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(mine.status, 401, 'the session token of a removed user opens nothing');
  });

  it('counts devices online, sessions and error frames in the metrics', async () => {
    const text = (await g.api<string>('GET', '/metrics')).text;
    assert.match(text, /^edgeward_rendezvous_sessions_total [1-9]\d*$/m);
    assert.match(text, /^edgeward_rendezvous_signal_errors_total [1-9]\d*$/m);
    assert.match(text, /^edgeward_rendezvous_devices_online \d+$/m);
  });
});
