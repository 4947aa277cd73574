// TURN long-term credentials of users in the store (edgeward user add NAME --turn): coturn's
// turnutils_uclient allocates and relays with the user's name and password; a user without TURN
// access, a wrong password and a removed user get no allocation. The store holds the key
// MD5(user:realm:password) and never the password. A client that signs with
// MESSAGE-INTEGRITY-SHA256 is answered with MESSAGE-INTEGRITY-SHA256.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Attr, checkMessageIntegritySha256, getAttr, longTermKey, StunClass, StunMessageBuilder, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { runCmd, type RunningProcess } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { errorCode, errorReason, startTurnPeer, turnPort, udpStunClient } from '../helpers/turn.js';

const skip = requirement(missingPrograms(['turnutils_uclient', 'turnutils_peer']));
if (skip) process.stdout.write(`# skipping the TURN store-user tests: ${skip}\n`);

const REALM = 'example.org';
const PASSWORD = 'horse-battery-staple-42';

describe('TURN with users from the store', { skip }, () => {
  let g: Gateway;
  let port = 0;
  let peerPort = 0;
  let peer: RunningProcess;
  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-realm', REALM, '--turn-allow-peers', '127.0.0.0/8'] });
    port = await turnPort(g);
    ({ port: peerPort, peer } = await startTurnPeer());
  });
  after(async () => {
    await peer?.stop();
    await g?.stop();
  });

  // `from`: the client's source address; refused credentials are budgeted per source, so each
  // test that fails on purpose does it from an address of its own
  const uclient = (user: string, password: string, from = '127.0.0.1'): ReturnType<typeof runCmd> =>
    runCmd(['turnutils_uclient', '-L', from, '-e', '127.0.0.1', '-r', String(peerPort), '-u', user, '-w', password, '-n', '20', '-m', '1', '-l', '100', '-p', String(port), '127.0.0.1'], { timeoutMs: 40_000 });
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, EDGEWARD_API_URL: g.apiUrl, EDGEWARD_API_TOKEN: g.token ?? '' });

  it('a user added with --turn allocates and relays with name and password (long-term credentials), nothing lost', async () => {
    const add = await runCmd([process.execPath, BIN, 'user', 'add', 'carol', '--turn', '--password-stdin'], { env: env(), input: `${PASSWORD}\n` });
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /added user carol \(socks, turn \(realm example\.org\)\)/);
    const r = await uclient('carol', PASSWORD);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const out = r.stdout + r.stderr;
    const m = /start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m.exec(out);
    assert.ok(m && Number(m[1]) >= 40 && m[1] === m[2], out);
    const list = await runCmd([process.execPath, BIN, 'user', 'list'], { env: env() });
    assert.match(list.stdout, /^carol\s+example\.org\s/m);
  });

  it('refuses a wrong password and a user without TURN access (no allocation)', async () => {
    const before = (await g.api<string>('GET', '/metrics')).text;
    const wrong = await uclient('carol', 'not-the-password', '127.0.0.2');
    assert.notEqual(wrong.code, 0, 'a wrong password must not allocate');
    const added = await g.api('POST', '/api/v1/users', { username: 'dave', password: PASSWORD });
    assert.equal(added.status, 201, added.text);
    const socksOnly = await uclient('dave', PASSWORD, '127.0.0.3');
    assert.notEqual(socksOnly.code, 0, 'a user without TURN access must not allocate');
    const unknown = await uclient('nobody', PASSWORD, '127.0.0.4');
    assert.notEqual(unknown.code, 0);
    const after = (await g.api<string>('GET', '/metrics')).text;
    const failures = (t: string): number => Number(/^edgeward_turn_auth_failures_total (\d+)/m.exec(t)?.[1] ?? 0);
    assert.ok(failures(after) >= failures(before) + 3, `auth failures: ${failures(before)} -> ${failures(after)}`);
  });

  it('stores MD5(user:realm:password) as the TURN key, and never the password', async () => {
    const dbFile = join(g.dataDir, 'edgeward.db');
    const db = new Database(dbFile, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare('SELECT turn_realm, turn_key FROM users WHERE username = ?').get('carol') as { turn_realm: string; turn_key: string };
      assert.equal(row.turn_realm, REALM);
      assert.equal(row.turn_key, createHash('md5').update(`carol:${REALM}:${PASSWORD}`).digest('hex'));
      const dave = db.prepare('SELECT turn_realm, turn_key FROM users WHERE username = ?').get('dave') as { turn_realm: string | null; turn_key: string | null };
      assert.deepEqual(dave, { turn_realm: null, turn_key: null });
    } finally {
      db.close();
    }
    for (const f of readdirSync(g.dataDir).filter((n) => n.startsWith('edgeward.db'))) {
      assert.ok(!readFileSync(join(g.dataDir, f)).includes(PASSWORD), `${f} holds the password in plain text`);
    }
  });

  it('answers MESSAGE-INTEGRITY-SHA256 with MESSAGE-INTEGRITY-SHA256 (RFC 8489), keyed with the same long-term key', async () => {
    const { socket: sock, ask } = await udpStunClient(port, '127.0.0.1');
    try {
      const transport = (b: StunMessageBuilder): StunMessageBuilder => b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]));
      const challenge = await ask(transport(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12))));
      assert.equal(challenge.cls, StunClass.ErrorResponse);
      const nonce = getAttr(challenge, Attr.NONCE)!.value.toString();
      const key = longTermKey('carol', REALM, PASSWORD);
      const signed = (pw: Buffer): StunMessageBuilder =>
        transport(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12)))
          .addString(Attr.USERNAME, 'carol')
          .addString(Attr.REALM, REALM)
          .addString(Attr.NONCE, nonce)
          .addMessageIntegritySha256(pw);
      const refused = await ask(signed(longTermKey('carol', REALM, 'wrong')));
      assert.equal(refused.cls, StunClass.ErrorResponse, 'a SHA-256 signature with the wrong key is refused');
      const ok = await ask(signed(key));
      assert.equal(ok.cls, StunClass.SuccessResponse, JSON.stringify(ok.attributes.map((a) => a.type)));
      assert.equal(getAttr(ok, Attr.MESSAGE_INTEGRITY), undefined, 'answered in kind: no SHA-1 MESSAGE-INTEGRITY');
      assert.ok(checkMessageIntegritySha256(ok, key), 'the answer carries a valid MESSAGE-INTEGRITY-SHA256');
      // free the allocation (Refresh with LIFETIME 0), signed the same way
      const refresh = new StunMessageBuilder(StunMethod.Refresh, StunClass.Request, randomBytes(12)).addUint32(Attr.LIFETIME, 0).addString(Attr.USERNAME, 'carol').addString(Attr.REALM, REALM).addString(Attr.NONCE, nonce).addMessageIntegritySha256(key);
      assert.equal((await ask(refresh)).cls, StunClass.SuccessResponse);
    } finally {
      sock.close();
    }
  });

  it('budgets refused credentials per source: after 10, a right password gets 401 too (no guessing at speed), other sources unaffected', async () => {
    const { socket: sock, ask } = await udpStunClient(port, '127.0.0.5');
    try {
      const transport = (b: StunMessageBuilder): StunMessageBuilder => b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]));
      const first = await ask(transport(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12))));
      const nonce = getAttr(first, Attr.NONCE)!.value.toString();
      const attempt = (password: string): Promise<StunMessage> =>
        ask(
          transport(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12)))
            .addString(Attr.USERNAME, 'carol')
            .addString(Attr.REALM, REALM)
            .addString(Attr.NONCE, nonce)
            .addMessageIntegrity(longTermKey('carol', REALM, password)),
        );
      for (let i = 0; i < 10; i++) assert.equal(errorCode(await attempt(`guess-${i}`)), 401);
      const locked = await attempt(PASSWORD);
      assert.equal(errorCode(locked), 401, 'the right password is refused once the budget is spent');
      assert.match(errorReason(locked), /too many refused credentials/);
    } finally {
      sock.close();
    }
    const other = await uclient('carol', PASSWORD, '127.0.0.6');
    assert.equal(other.code, 0, `another source still allocates:\n${other.stdout}${other.stderr}`);
    const m = (await g.api<string>('GET', '/metrics')).text;
    assert.ok(Number(/^edgeward_turn_throttled_total (\d+)/m.exec(m)?.[1] ?? 0) >= 1, m);
  });

  it('stops answering a source that floods unauthenticated Allocates (no reflection beyond its budget)', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.7', () => r()));
    let answers = 0;
    sock.on('message', () => answers++);
    try {
      const started = Date.now();
      for (let i = 0; i < 400; i++) {
        const b = new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12)).add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]));
        sock.send(b.build(), port, '127.0.0.1');
      }
      await new Promise((r) => setTimeout(r, 500));
      const seconds = (Date.now() - started) / 1000;
      // burst 100, then 20 a second
      assert.ok(answers >= 100 && answers <= 100 + Math.ceil(20 * seconds) + 5, `${answers} answers to 400 Allocates in ${seconds.toFixed(2)} s`);
    } finally {
      sock.close();
    }
  });

  it('a removed user gets no new allocation', async () => {
    const rm = await runCmd([process.execPath, BIN, 'user', 'rm', 'carol'], { env: env() });
    assert.equal(rm.code, 0, rm.stderr);
    const r = await uclient('carol', PASSWORD);
    assert.notEqual(r.code, 0, 'a removed user must not allocate');
  });
});
