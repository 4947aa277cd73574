// The splice relay (relay/splice.ts) between real loopback TCP connections: bytes intact both ways
// at once, half-close, a reset passed on, backpressure without buffering, the idle timeout, and no
// pipe held by an idle connection.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { takeSocket } from '../../src/kernel/fdio.js';
import { SpliceRelay, type RelayEnd } from '../../src/relay/splice.js';

interface Pair {
  /** what the proxied client holds */
  client: net.Socket;
  /** what the destination holds */
  dest: net.Socket;
  relay: SpliceRelay;
  ended: Promise<{ how: RelayEnd; err?: Error }>;
}

let server: net.Server;
const accepted: net.Socket[] = [];
const opened: net.Socket[] = [];

async function connected(): Promise<{ local: net.Socket; remote: net.Socket }> {
  const n = accepted.length;
  const local = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  opened.push(local);
  await new Promise<void>((resolve, reject) => local.once('connect', resolve).once('error', reject));
  while (accepted.length === n) await new Promise((r) => setTimeout(r, 2));
  return { local, remote: accepted[n]! };
}

/** client <-> [relay: a.remote | b.local] <-> dest */
async function relayed(opts: { idleTimeout?: number; toRemote?: Buffer; reply?: Buffer } = {}): Promise<Pair> {
  const a = await connected();
  const b = await connected();
  let done!: (v: { how: RelayEnd; err?: Error }) => void;
  const ended = new Promise<{ how: RelayEnd; err?: Error }>((r) => (done = r));
  const relay = new SpliceRelay(takeSocket(a.remote).fd, takeSocket(b.local).fd, { idleTimeout: opts.idleTimeout ?? 0, toRemote: opts.toRemote, reply: opts.reply }, (how, err) => done({ how, err }));
  relay.start();
  a.local.on('error', () => undefined);
  b.remote.on('error', () => undefined);
  return { client: a.local, dest: b.remote, relay, ended };
}

function collect(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => s.once('end', () => resolve(Buffer.concat(chunks))));
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function pipesOpen(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('pipe:')) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

describe('splice relay', () => {
  before(async () => {
    server = net.createServer({ allowHalfOpen: true }, (s) => accepted.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    for (const s of [...opened, ...accepted]) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('carries 32 MiB each way at once, intact, with the bytes counted, and closes both sockets after both FINs', async () => {
    const p = await relayed();
    const up = randomBytes(32 << 20);
    const down = randomBytes(32 << 20);
    const atDest = collect(p.dest);
    const atClient = collect(p.client);
    p.client.end(up);
    p.dest.end(down);
    const [gotUp, gotDown] = await Promise.all([atDest, atClient]);
    assert.equal(gotUp.length, up.length);
    assert.equal(sha(gotUp), sha(up));
    assert.equal(sha(gotDown), sha(down));
    assert.deepEqual(await p.ended, { how: 'closed', err: undefined });
    assert.deepEqual(p.relay.bytes, { up: up.length, down: down.length });
    assert.equal(p.relay.open, false);
  });

  it('sends the reply and the early bytes first, and passes a half-close on while the other way keeps flowing', async () => {
    const p = await relayed({ toRemote: Buffer.from('early '), reply: Buffer.from('REPLY|') });
    const atDest = collect(p.dest);
    const clientGot: Buffer[] = [];
    p.client.on('data', (d: Buffer) => clientGot.push(d));
    p.client.end('hello'); // the client is done sending
    assert.equal((await atDest).toString(), 'early hello', 'the destination read the early bytes, then the rest, then end of stream');
    // the other way is still open: the destination answers after the client's FIN
    p.dest.write('answer');
    while (Buffer.concat(clientGot).length < 12) await new Promise((r) => setTimeout(r, 5));
    assert.equal(Buffer.concat(clientGot).toString(), 'REPLY|answer');
    assert.equal(p.relay.open, true, 'a half-closed relay stays open');
    const clientEnd = new Promise((r) => p.client.once('end', r));
    p.dest.end();
    await clientEnd;
    assert.equal((await p.ended).how, 'closed');
    assert.deepEqual(p.relay.bytes, { up: 'early hello'.length, down: 'answer'.length }, 'the reply is not counted');
  });

  it('passes a reset on as a reset', async () => {
    const p = await relayed();
    p.client.write('x');
    await new Promise((r) => p.dest.once('data', r));
    const clientError = new Promise<NodeJS.ErrnoException>((r) => p.client.once('error', r));
    p.dest.resetAndDestroy();
    assert.equal((await clientError).code, 'ECONNRESET', 'the client learns the connection broke');
    const end = await p.ended;
    assert.equal(end.how, 'error');
    assert.equal((end.err as NodeJS.ErrnoException).code, 'ECONNRESET');
  });

  it('holds back a fast sender for a destination that does not read, without buffering, and delivers everything once it does', async () => {
    const p = await relayed();
    p.dest.pause();
    const total = 64 << 20;
    const data = randomBytes(total);
    p.client.write(data);
    await new Promise((r) => setTimeout(r, 1000));
    const inFlight = p.relay.bytes.up;
    process.stdout.write(`# backpressure: ${(inFlight / 1048576).toFixed(1)} MiB of 64 read by the relay while the destination did not read; client still holds ${(p.client.writableLength / 1048576).toFixed(1)} MiB\n`);
    assert.ok(inFlight < 24 << 20, `the relay read only what the kernel's buffers and one pipe hold: ${inFlight}`);
    assert.ok(p.client.writableLength > 16 << 20, 'the sender was held back');
    const atDest = collect(p.dest);
    p.dest.resume();
    p.client.end();
    assert.equal(sha(await atDest), sha(data));
    p.dest.end();
    assert.equal((await p.ended).how, 'closed');
  });

  it('closes a relay that moved nothing for its idle timeout, and keeps one that did', async () => {
    const idle = await relayed({ idleTimeout: 300 });
    const busy = await relayed({ idleTimeout: 1500 });
    const t0 = Date.now();
    const ticker = setInterval(() => busy.client.write('.'), 100);
    busy.dest.resume();
    const end = await idle.ended;
    const took = Date.now() - t0;
    assert.equal(end.how, 'idle');
    assert.ok(took >= 300 && took < 2500, `closed after ${took} ms`);
    idle.client.resume();
    await new Promise((r) => idle.client.once('end', r)); // the relay closed its side
    assert.equal(busy.relay.open, true, 'the one with traffic is still open');
    clearInterval(ticker);
    assert.equal((await busy.ended).how, 'idle');
  });

  it('holds no pipe for idle connections: 200 relays that each moved a message add at most the spare pool', async () => {
    const before = pipesOpen();
    const pairs: Pair[] = [];
    for (let i = 0; i < 200; i++) {
      const p = await relayed();
      p.client.write('ping');
      await new Promise((r) => p.dest.once('data', r));
      pairs.push(p);
    }
    const during = pipesOpen();
    process.stdout.write(`# pipes: ${before} before, ${during} with 200 idle relays\n`);
    assert.ok(during - before <= 2 * 16, `idle relays do not keep pipes: ${during - before} more`);
    for (const p of pairs) {
      p.client.end();
      p.dest.end();
    }
    await Promise.all(pairs.map((p) => p.ended));
  });
});
