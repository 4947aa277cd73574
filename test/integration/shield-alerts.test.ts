// What the README promises of the shield's alerts and events, against a real HTTP server and the
// real SQLite store: the webhook tries an alert 4 times with a growing wait, then gives up; at most
// 100 alerts wait (the oldest dropped); the store keeps the last 1000 events.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { createLogger } from '../../src/log/logger.js';
import { EventStream, MAX_SUBSCRIBERS, Webhook } from '../../src/shield/alerts.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SHIELD_EVENTS_KEPT } from '../../src/store/store.js';

async function server(t: TestContext, handle: http.RequestListener): Promise<string> {
  const s = http.createServer(handle);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    s.closeAllConnections();
    s.close();
  });
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/hook`;
}

async function waitUntil(ok: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('shield alerts', () => {
  it('the webhook tries an alert 4 times, waiting longer each time, then gives up and says so', { timeout: 20_000 }, async (t) => {
    const at: number[] = [];
    const url = await server(t, (req, res) => {
      req.resume();
      at.push(performance.now());
      res.writeHead(503).end();
    });
    const logs: string[] = [];
    const hook = new Webhook(url, createLogger({ level: 'warn', format: 'json', write: (l) => logs.push(l) }));
    hook.send({ type: 'attack.started' });
    await hook.flush(15_000);
    const gaps = at.slice(1).map((v, i) => v - at[i]!);
    process.stdout.write(`# webhook tries: ${at.length}, gaps ${gaps.map((g) => `${Math.round(g)} ms`).join(', ')}\n`);
    assert.equal(at.length, 4, 'four tries, the first included');
    assert.ok(gaps[1]! > gaps[0]! * 1.5 && gaps[2]! > gaps[1]! * 1.5, 'each wait about doubles the one before');
    assert.deepEqual([hook.delivered, hook.failed], [0, 1]);
    assert.match(logs.join('\n'), /"attempts":4,"error":"HTTP 503","msg":"shield: webhook gave up on an alert"/);
    hook.close();
  });

  it('at most 100 alerts wait while the receiver hangs: the oldest go first', { timeout: 10_000 }, async (t) => {
    let seen = 0;
    const url = await server(t, (req) => {
      req.resume();
      seen++; // never answered
    });
    const hook = new Webhook(url, createLogger({ level: 'error', format: 'json', write: () => undefined }));
    for (let i = 0; i < 151; i++) hook.send({ n: i });
    assert.equal(hook.failed, 50, 'one in flight, 100 waiting, 50 dropped');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen, 1, 'one delivery at a time');
    hook.close();
  });

  it('the event stream takes 64 subscribers and refuses the 65th; a subscriber that stops reading is dropped, the others get everything', { timeout: 30_000 }, async (t) => {
    const stream = new EventStream();
    t.after(() => stream.close());
    const url = await server(t, (req, res) => {
      if (!stream.subscribe(res)) res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"too_many_streams"}}');
    });
    const { port } = new URL(url);
    // real HTTP clients, each reading its stream as it comes
    const open = (): Promise<{ status: number; req: http.ClientRequest; text: () => string; body: Promise<string> }> =>
      new Promise((resolve, reject) => {
        const req = http.get(`http://127.0.0.1:${port}/stream`, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          const body = new Promise<string>((r) => res.on('close', () => r(text)));
          resolve({ status: res.statusCode ?? 0, req, text: () => text, body });
        });
        req.on('error', reject);
      });
    const first = await Promise.all(Array.from({ length: MAX_SUBSCRIBERS }, open));
    assert.deepEqual([...new Set(first.map((c) => c.status))], [200]);
    assert.equal(stream.size, 64);
    const extra = await open();
    assert.equal(extra.status, 503, 'the 65th is refused');
    assert.match(await extra.body, /too_many_streams/);
    first[0]!.req.destroy();
    await waitUntil(() => stream.size === 63);
    const again = await open();
    assert.equal(again.status, 200, 'a place freed is taken again');

    // a client that never reads: once 1 MiB waits for it beyond what the kernel buffers, it is dropped
    const stuck = net.connect({ host: '127.0.0.1', port: Number(port) });
    stuck.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => stuck.once('data', r));
    stuck.pause();
    first[1]!.req.destroy(); // room for it
    await waitUntil(() => stream.size === 64);
    const payload = 'x'.repeat(1000);
    let sent = 0;
    while (stream.size === 64 && sent < 64_000) {
      stream.publish('rates', { n: sent++, payload });
      if (sent % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    process.stdout.write(`# a subscriber that stopped reading was dropped after ${sent} events of 1 kB; ${stream.size} left\n`);
    assert.equal(stream.size, 63, 'the stuck one was dropped');
    stream.publish('rates', { n: 'last' });
    await waitUntil(() => again.text().includes('"n":"last"'));
    const got = (again.text().match(/^event: rates$/gm) ?? []).length;
    assert.equal(got, sent + 1, 'a subscriber that reads got every event');
    stuck.destroy();
  });

  it('the store keeps the last 1000 attack events', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeward-shield-events-'));
    const store = new SqliteStore(dir);
    t.after(async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const ids: number[] = [];
    for (let i = 0; i < SHIELD_EVENTS_KEPT + 5; i++) ids.push(await store.putShieldEvent({ id: 0, kind: i % 2 ? 'syn_flood' : 'udp_flood', startedAt: new Date(i * 1000).toISOString(), endedAt: null, peakPps: i, packets: i, details: { n: i } }));
    const kept = await store.listShieldEvents({ limit: 5000 });
    assert.equal(kept.length, 1000);
    assert.equal(kept[0]!.id, ids.at(-1), 'newest first');
    assert.equal(kept.at(-1)!.id, ids[5], 'the 5 oldest are gone');
    assert.deepEqual(kept[0]!.details, { n: SHIELD_EVENTS_KEPT + 4 });
    const updated = await store.putShieldEvent({ ...kept[0]!, endedAt: new Date(0).toISOString() });
    assert.equal(updated, kept[0]!.id, 'an update keeps the id');
    assert.equal((await store.listShieldEvents({ limit: 1, kind: 'udp_flood' }))[0]!.kind, 'udp_flood');
  });
});
