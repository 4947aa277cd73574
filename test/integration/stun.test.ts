// The rendezvous service's STUN server (edgeward start --turn) against clients no one here wrote:
// coturn's turnutils_stunclient (RFC 5389/8489) and the classic `stun` client (RFC 3489), plus raw
// messages for what those clients never send: TCP framing, 420 for an unknown attribute, 400 for a
// TURN method, malformed input dropped without disturbing anyone else.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { runCmd, waitFor } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';

const skip = requirement(missingPrograms(['turnutils_stunclient', 'stun']));
if (skip) process.stdout.write(`# skipping the STUN interoperability tests: ${skip}\n`);

const COOKIE = Buffer.from([0x21, 0x12, 0xa4, 0x42]);

/** A STUN message by hand (header + attributes as given), so the test does not use edgeward's own codec. */
function stunMessage(type: number, id: Buffer, attrs: Array<[number, Buffer]> = []): Buffer {
  const body = Buffer.concat(
    attrs.map(([t, v]) => {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(t, 0);
      h.writeUInt16BE(v.length, 2);
      return Buffer.concat([h, v, Buffer.alloc((4 - (v.length % 4)) % 4)]);
    }),
  );
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([head, COOKIE, id, body]);
}

/** The attributes of a response, by type (first of each). */
function attributes(msg: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let off = 20; off + 4 <= msg.length; ) {
    const t = msg.readUInt16BE(off);
    const len = msg.readUInt16BE(off + 2);
    if (!out.has(t)) out.set(t, msg.subarray(off + 4, off + 4 + len));
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return out;
}

/** XOR-MAPPED-ADDRESS (IPv4) decoded by hand: port and address XORed with the magic cookie. */
function xorMappedV4(v: Buffer): { ip: string; port: number } {
  const port = v.readUInt16BE(2) ^ 0x2112;
  const ip = [0, 1, 2, 3].map((i) => v[4 + i]! ^ COOKIE[i]!).join('.');
  return { ip, port };
}

function udpAsk(port: number, msg: Buffer, timeoutMs = 2000): Promise<{ reply: Buffer | null; localPort: number }> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const localPort = s.address().port;
      const timer = setTimeout(() => {
        s.close();
        resolve({ reply: null, localPort });
      }, timeoutMs);
      s.once('message', (m) => {
        clearTimeout(timer);
        s.close();
        resolve({ reply: m, localPort });
      });
      s.send(msg, port, '127.0.0.1');
    });
  });
}

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('edgeward start --turn: the STUN server', { skip }, () => {
  let g: Gateway;
  let port = 0;
  before(async () => {
    // a UDP port the kernel picks, then the same for TCP (the service binds both)
    g = await startGateway({ args: ['--turn', '127.0.0.1:0'] });
    const listening = await g.waitForLog((l) => l.msg === 'listening');
    const m = /^127\.0\.0\.1:(\d+)$/.exec(String(listening.turn));
    assert.ok(m, `the listening line names the STUN address: ${JSON.stringify(listening)}`);
    port = Number(m[1]);
  });
  after(async () => {
    await g?.stop();
  });

  it('answers coturn\'s turnutils_stunclient with its reflexive address', async () => {
    const r = await runCmd(['turnutils_stunclient', '-p', String(port), '127.0.0.1'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /UDP reflexive addr: 127\.0\.0\.1:\d+/);
  });

  it('answers the classic RFC 3489 `stun` client, which finds no NAT on loopback (as against coturn)', async () => {
    const r = await runCmd(['stun', `127.0.0.1:${port}`], { timeoutMs: 20_000 });
    assert.match(r.stdout + r.stderr, /Primary: Open/, r.stdout + r.stderr);
  });

  it('answers a Binding request over UDP with XOR-MAPPED-ADDRESS = the sender, in a success response with the same transaction id', async () => {
    const id = Buffer.from('0123456789ab');
    const { reply, localPort } = await udpAsk(port, stunMessage(0x0001, id));
    assert.ok(reply, 'a reply');
    assert.equal(reply.readUInt16BE(0), 0x0101, 'Binding success response');
    assert.deepEqual(reply.subarray(8, 20), id);
    const xma = attributes(reply).get(0x0020);
    assert.ok(xma, 'XOR-MAPPED-ADDRESS');
    assert.deepEqual(xorMappedV4(xma), { ip: '127.0.0.1', port: localPort });
  });

  it('answers 420 with UNKNOWN-ATTRIBUTES for a comprehension-required attribute it does not know', async () => {
    const { reply } = await udpAsk(port, stunMessage(0x0001, Buffer.from('abcdefghijkl'), [[0x7777, Buffer.from([1, 2, 3, 4])]]));
    assert.ok(reply);
    assert.equal(reply.readUInt16BE(0), 0x0111, 'Binding error response');
    const a = attributes(reply);
    const code = a.get(0x0009)!;
    assert.equal(code[2]! * 100 + code[3]!, 420);
    assert.deepEqual(a.get(0x000a), Buffer.from([0x77, 0x77]));
  });

  it('ignores a comprehension-optional attribute it does not know', async () => {
    const { reply } = await udpAsk(port, stunMessage(0x0001, Buffer.from('ABCDEFGHIJKL'), [[0xc0ff, Buffer.from('x')]]));
    assert.equal(reply?.readUInt16BE(0), 0x0101);
  });

  it('without --turn-secret, answers a TURN Allocate with a 401 challenge (realm and nonce): only credentials open TURN', async () => {
    const { reply } = await udpAsk(port, stunMessage(0x0003, Buffer.from('allocate-id!')));
    assert.ok(reply);
    assert.equal(reply.readUInt16BE(0), 0x0113, 'Allocate error response');
    const a = attributes(reply);
    const code = a.get(0x0009)!;
    assert.equal(code[2]! * 100 + code[3]!, 401);
    assert.equal(a.get(0x0014)?.toString(), 'edgeward', 'REALM');
    assert.ok(a.get(0x0015)?.length, 'NONCE');
  });

  it('over TCP: two requests in one write get two answers; a broken frame closes only that connection', async () => {
    const good = await new Promise<net.Socket>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
    });
    const replies: Buffer[] = [];
    let buf = Buffer.alloc(0);
    good.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 20 && buf.length >= 20 + buf.readUInt16BE(2)) {
        const n = 20 + buf.readUInt16BE(2);
        replies.push(buf.subarray(0, n));
        buf = buf.subarray(n);
      }
    });
    good.write(Buffer.concat([stunMessage(0x0001, Buffer.from('tcp-request1')), stunMessage(0x0001, Buffer.from('tcp-request2'))]));
    await waitFor('two TCP replies', () => replies.length === 2);
    assert.deepEqual(replies.map((r) => r.subarray(8, 20).toString()), ['tcp-request1', 'tcp-request2']);
    assert.deepEqual(xorMappedV4(attributes(replies[0]!).get(0x0020)!), { ip: '127.0.0.1', port: good.localPort });

    const bad = net.connect(port, '127.0.0.1');
    bad.on('error', () => undefined);
    const closed = new Promise<boolean>((resolve) => {
      bad.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 5000);
    });
    bad.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(await closed, true, 'the server closes a connection that is not speaking STUN');
    good.write(stunMessage(0x0001, Buffer.from('tcp-request3')));
    await waitFor('the good connection still answered', () => replies.length === 3);
    good.destroy();
  });

  it('drops malformed datagrams without an answer, counts them, and goes on answering', async () => {
    const before = metric((await g.api<string>('GET', '/metrics')).text, 'edgeward_stun_malformed_total') ?? 0;
    const truncated = stunMessage(0x0001, Buffer.from('truncated-id'), [[0x0006, Buffer.from('user')]]).subarray(0, 26);
    const { reply } = await udpAsk(port, truncated, 500);
    assert.equal(reply, null, 'no answer to a truncated message');
    const { reply: next } = await udpAsk(port, stunMessage(0x0001, Buffer.from('after-broken')));
    assert.equal(next?.readUInt16BE(0), 0x0101);
    const m = (await g.api<string>('GET', '/metrics')).text;
    assert.equal(metric(m, 'edgeward_stun_malformed_total'), before + 1, m);
    assert.ok((metric(m, 'edgeward_stun_binding_requests_total{transport="udp"}') ?? 0) >= 3, m);
    assert.ok((metric(m, 'edgeward_stun_binding_requests_total{transport="tcp"}') ?? 0) >= 3, m);
  });
});
