// What the README promises of the shield's alerts and events, against a real HTTP server and the
// real SQLite store: the webhook tries an alert 4 times with a growing wait, then gives up; at most
// 100 alerts wait (the oldest dropped); the store keeps the last 1000 events.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { createLogger } from '../../src/log/logger.js';
import { Webhook } from '../../src/shield/alerts.js';
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
