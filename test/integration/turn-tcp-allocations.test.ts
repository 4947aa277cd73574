// TURN TCP allocations (RFC 6062): coturn's turnutils_uclient -T relays TCP between two clients
// through edgeward (Connect, ConnectionAttempt, ConnectionBind, data connections), over TCP and
// over TLS control connections, with nothing lost; a TCP allocation from a UDP client is refused
// (400), and a Connect to a peer that does not answer gets 447 without disturbing the allocation.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Attr, frameLength, getAttr, longTermKey, parseStun, StunClass, StunMessageBuilder, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { restCredential } from '../../src/rendezvous/turn-auth.js';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { startEchoServer, type TcpPeer } from '../helpers/peers.js';
import { runCmd } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { assertAllEchoed, errorCode, requestedTransport, signedSession, turnPort } from '../helpers/turn.js';

const skip = requirement(missingPrograms(['turnutils_uclient', 'openssl']));
if (skip) process.stdout.write(`# skipping the TURN TCP allocation tests: ${skip}\n`);

const SECRET = 'turn-tcp-secret';

/** A TURN client over one TCP connection: one request at a time. */
class TcpTurnClient {
  private buf = Buffer.alloc(0);
  private waiting: ((m: StunMessage) => void) | null = null;
  readonly indications: StunMessage[] = [];
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (;;) {
        const n = frameLength(this.buf);
        if (typeof n !== 'number' || this.buf.length < n) return;
        const p = parseStun(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        if (!p.ok) continue;
        if (p.value.cls === StunClass.Indication) this.indications.push(p.value);
        else this.waiting?.(p.value);
      }
    });
  }

  static async open(port: number): Promise<TcpTurnClient> {
    const s = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return new TcpTurnClient(s);
  }

  ask(b: StunMessageBuilder, timeoutMs = 5000): Promise<StunMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = (m) => {
        clearTimeout(timer);
        this.waiting = null;
        resolve(m);
      };
      this.socket.write(b.build());
    });
  }

  /** Allocate (after the 401 round) with `fill`; then signs further requests with the same credential. */
  async allocate(fill: (b: StunMessageBuilder) => StunMessageBuilder): Promise<{ answer: StunMessage; credential: { username: string; password: string }; signed(method: number, fill: (b: StunMessageBuilder) => StunMessageBuilder): Promise<StunMessage> }> {
    const c = restCredential('tcp-user', SECRET, 600);
    const key = longTermKey(c.username, 'edgeward', c.password);
    const nonce = getAttr(await this.ask(fill(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12)))), Attr.NONCE)!.value.toString();
    const sign = (b: StunMessageBuilder): StunMessageBuilder => b.addString(Attr.USERNAME, c.username).addString(Attr.REALM, 'edgeward').addString(Attr.NONCE, nonce).addMessageIntegrity(key);
    const answer = await this.ask(sign(fill(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12)))));
    return { answer, credential: c, signed: (method, f) => this.ask(sign(f(new StunMessageBuilder(method, StunClass.Request, randomBytes(12))))) };
  }

  close(): void {
    this.socket.destroy();
  }
}

const tcpTransport = requestedTransport(6);

describe('TURN TCP allocations (RFC 6062)', { skip }, () => {
  let g: Gateway;
  let port = 0;
  let tlsPort = 0;
  let dir: string;
  let echo: TcpPeer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeward-turn-tcp-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    const r = await runCmd(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost']);
    assert.equal(r.code, 0, r.stderr);
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-tls', '127.0.0.1:0', '--turn-tls-cert', cert, '--turn-tls-key', key, '--turn-secret', SECRET, '--turn-allow-peers', '127.0.0.0/8'] });
    port = await turnPort(g);
    tlsPort = await turnPort(g, 'turnTls');
    echo = await startEchoServer();
  });
  after(async () => {
    await echo?.close();
    await g?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const uclient = (extra: string[], p: number): ReturnType<typeof runCmd> =>
    runCmd(['turnutils_uclient', '-T', ...extra, '-W', SECRET, '-u', 'tcp-user', '-n', '20', '-m', '1', '-l', '100', '-p', String(p), '127.0.0.1'], { timeoutMs: 60_000 });

  it('relays TCP between two clients (uclient -T: Connect, ConnectionAttempt, ConnectionBind), nothing lost', async () => {
    const r = await uclient([], port);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 20);
  });

  it('does the same with the control and data connections over TLS (-T -S)', async () => {
    const r = await uclient(['-S'], tlsPort);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 20);
  });

  it('connects to a TCP peer (Connect), binds a data connection (ConnectionBind) and pipes bytes both ways', async () => {
    const control = await TcpTurnClient.open(port);
    try {
      const { answer, credential: c, signed } = await control.allocate(tcpTransport);
      assert.equal(answer.cls, StunClass.SuccessResponse, `Allocate: ${errorCode(answer)}`);
      const connect = await signed(StunMethod.Connect, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, '127.0.0.1', echo.port));
      assert.equal(connect.cls, StunClass.SuccessResponse, `Connect: ${errorCode(connect)}`);
      const id = getAttr(connect, Attr.CONNECTION_ID)!.value;
      const again = await signed(StunMethod.Connect, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, '127.0.0.1', echo.port));
      assert.equal(errorCode(again), 446, 'one connection per peer address');
      // the data connection: ConnectionBind with the allocation's own credential (RFC 6062 answers 441
      // to another one; a credential made a second later has another expiry, so another username),
      // after its own nonce round, then raw bytes
      const data = await TcpTurnClient.open(port);
      const key = longTermKey(c.username, 'edgeward', c.password);
      const bind = (nonce: string): StunMessageBuilder =>
        new StunMessageBuilder(StunMethod.ConnectionBind, StunClass.Request, randomBytes(12)).add(Attr.CONNECTION_ID, id).addString(Attr.USERNAME, c.username).addString(Attr.REALM, 'edgeward').addString(Attr.NONCE, nonce).addMessageIntegrity(key);
      const stale = await data.ask(bind('0-00000000000000000000000000000000'));
      assert.equal(errorCode(stale), 438, 'a nonce from elsewhere: 438, and the connection stays a STUN connection');
      const bound = await data.ask(bind(getAttr(stale, Attr.NONCE)!.value.toString()));
      assert.equal(bound.cls, StunClass.SuccessResponse, `ConnectionBind: ${errorCode(bound)}`);
      const payload = randomBytes(200_000);
      const received: Buffer[] = [];
      let got = 0;
      const done = new Promise<void>((resolve) => {
        data.socket.removeAllListeners('data');
        data.socket.on('data', (b: Buffer) => {
          received.push(b);
          got += b.length;
          if (got >= payload.length) resolve();
        });
      });
      data.socket.write(payload);
      await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`echoed ${got} of ${payload.length} bytes in 10 s`)), 10_000))]);
      assert.ok(Buffer.concat(received).equals(payload), 'the echo came back byte for byte');
      const list = await g.api<{ allocations: Array<{ user: string; transport: string; relayProtocol: string; bytes: { up: number; down: number } }> }>('GET', '/api/v1/turn/allocations');
      const mine = list.body.allocations.find((a) => a.user === 'tcp-user' && a.bytes.up >= payload.length);
      assert.ok(mine && mine.bytes.down >= payload.length, JSON.stringify(list.body.allocations));
      assert.equal(mine.relayProtocol, 'tcp');
      assert.equal(mine.transport, 'tcp');
      data.close();
      // a peer that refuses: 447, and the allocation still works
      const refused = await signed(StunMethod.Connect, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, '127.0.0.1', 1));
      assert.equal(errorCode(refused), 447);
      const refresh = await signed(StunMethod.Refresh, (b) => b.addUint32(Attr.LIFETIME, 600));
      assert.equal(refresh.cls, StunClass.SuccessResponse);
    } finally {
      control.close();
    }
  });

  it('refuses a TCP allocation to a client over UDP (400)', async () => {
    const s = await signedSession(port, { secret: SECRET, user: 'tcp-user' });
    try {
      assert.equal(errorCode(await s.request(StunMethod.Allocate, tcpTransport)), 400);
    } finally {
      s.close();
    }
  });
});
