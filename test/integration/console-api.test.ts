// The console's server side against the real program: sign-in (API token, or a user with the
// console role), the session cookie's attributes, every API route and event stream refused without a
// session, changes refused without the CSRF token or from another origin, and a page of another
// origin in Chromium that cannot drive the API with the signed-in browser's cookie. Then what the
// console reads: the services' state, the kernel's offer, the log lines, the event stream, the flat
// file import.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'puppeteer-core';
import { launchChromium } from '../helpers/browser.js';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';

const skipBrowser = requirement(missingPrograms(['chromium']));
if (skipBrowser) process.stdout.write(`# skipping the cross-origin browser test: ${skipBrowser}\n`);

interface Reply {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

async function http(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** Signs in; returns the cookie pair ("edgeward_console=...") and the CSRF token. */
async function signIn(g: Gateway, body: unknown): Promise<{ cookie: string; csrf: string; reply: Reply }> {
  const reply = await http(`${g.apiUrl}/api/v1/console/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const set = reply.headers.get('set-cookie') ?? '';
  return { cookie: set.split(';')[0] ?? '', csrf: reply.body?.csrf ?? '', reply };
}

describe('the console API', () => {
  let g: Gateway;

  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0'] });
  });
  after(async () => {
    await g?.stop();
  });

  it('serves /console under a strict Content-Security-Policy', async () => {
    const r = await http(`${g.apiUrl}/console`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/, 'scripts from this origin only');
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, csp);
    assert.doesNotMatch(r.text, /<script>|<script [^>]*>[^<]+<\/script>|\son[a-z]+=/i, 'no inline script or handler in the page');
    for (const file of ['app.js', 'app.css']) {
      const f = await http(`${g.apiUrl}/console/${file}`, { headers: { 'accept-encoding': 'identity' } });
      assert.equal(f.status, 200, `${file}: ${f.status}`);
      assert.equal(f.headers.get('content-encoding'), null);
      assert.ok(f.text.length > 1000, `${file} is the built console (${f.text.length} bytes)`);
      // compressed for a browser that takes gzip (fetch decompresses it again here)
      const z = await http(`${g.apiUrl}/console/${file}`, { headers: { 'accept-encoding': 'gzip, br' } });
      assert.equal(z.headers.get('content-encoding'), 'gzip');
      assert.equal(z.text, f.text);
    }
  });

  it('refuses every API route and event stream without a session or token', async () => {
    const doc = (await http(`${g.apiUrl}/api/docs`)).body as { paths: Record<string, Record<string, { security?: unknown[] }>> };
    let checked = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        if (Array.isArray(op.security) && op.security.length === 0) continue; // declared public (health, sign-in, rendezvous login)
        const url = g.apiUrl + path.replace(/\{[^}]+\}/g, '1');
        const r = await http(url, { method: method.toUpperCase(), headers: { 'content-type': 'application/json' }, ...(method === 'get' || method === 'delete' ? {} : { body: '{}' }) });
        assert.equal(r.status, 401, `${method.toUpperCase()} ${path} without a session: ${r.status} ${r.text.slice(0, 200)}`);
        checked++;
      }
    }
    for (const stream of ['/api/v1/stream']) {
      const r = await http(g.apiUrl + stream, { headers: { accept: 'text/event-stream' } });
      assert.equal(r.status, 401, `${stream}: ${r.status}`);
    }
    // a cookie that is no session is refused, not ignored
    const forged = await http(`${g.apiUrl}/api/v1/policies`, { headers: { cookie: 'edgeward_console=ewc_forged' } });
    assert.equal(forged.status, 401);
    assert.equal(forged.body.error.code, 'session_expired');
    process.stdout.write(`# ${checked} API operations refused without a session\n`);
    assert.ok(checked >= 25, `the OpenAPI document lists the routes (${checked})`);
  });

  it('signs in with the API token: an HttpOnly SameSite=Strict cookie; a wrong token is refused', async () => {
    const wrong = await signIn(g, { token: 'not-the-token' });
    assert.equal(wrong.reply.status, 401);
    assert.equal(wrong.reply.body.error.field, 'body.token');
    assert.equal(wrong.reply.headers.get('set-cookie'), null);
    const { cookie, csrf, reply } = await signIn(g, { token: g.token });
    assert.equal(reply.status, 200, reply.text);
    const set = reply.headers.get('set-cookie') ?? '';
    assert.match(set, /^edgeward_console=ewc_[A-Za-z0-9_-]{40,};/);
    assert.match(set, /; HttpOnly/);
    assert.match(set, /; SameSite=Strict/);
    assert.match(set, /; Path=\//);
    assert.match(set, /; Max-Age=43200(;|$)/, 'the session lasts 12 hours (README)');
    assert.equal(reply.body.user, null);
    assert.ok(csrf.length >= 20);
    assert.ok(!reply.text.includes(cookie.split('=')[1]!), 'the session token is in the cookie only, not in the body');
    const none = await http(`${g.apiUrl}/api/v1/console/session`);
    assert.deepEqual([none.status, none.body], [200, { signedIn: false }], 'a first visit is answered, not an error');
    const me = await http(`${g.apiUrl}/api/v1/console/session`, { headers: { cookie } });
    assert.equal(me.status, 200);
    assert.equal(me.body.signedIn, true);
    assert.equal(me.body.csrf, csrf, 'a reloaded page gets its CSRF token back');
    const list = await http(`${g.apiUrl}/api/v1/policies`, { headers: { cookie } });
    assert.equal(list.status, 200, 'reads work with the cookie');
  });

  it('refuses a change without the CSRF token, or from another origin; takes it with both', async () => {
    const { cookie, csrf } = await signIn(g, { token: g.token });
    const body = JSON.stringify({ match: { host: 'csrf.test' }, transport: { noDelay: true } });
    const json = { 'content-type': 'application/json' };
    const noToken = await http(`${g.apiUrl}/api/v1/policies`, { method: 'POST', headers: { ...json, cookie }, body });
    assert.equal(noToken.status, 403, noToken.text);
    assert.equal(noToken.body.error.code, 'csrf');
    const wrongToken = await http(`${g.apiUrl}/api/v1/policies`, { method: 'POST', headers: { ...json, cookie, 'x-csrf-token': 'guess' }, body });
    assert.equal(wrongToken.status, 403);
    const otherOrigin = await http(`${g.apiUrl}/api/v1/policies`, { method: 'POST', headers: { ...json, cookie, 'x-csrf-token': csrf, origin: 'http://127.0.0.1:1' }, body });
    assert.equal(otherOrigin.status, 403, otherOrigin.text);
    assert.equal(otherOrigin.body.error.code, 'cross_origin');
    assert.equal((await g.api<{ policies: unknown[] }>('GET', '/api/v1/policies')).body.policies.length, 0, 'nothing was created');
    const ok = await http(`${g.apiUrl}/api/v1/policies`, { method: 'POST', headers: { ...json, cookie, 'x-csrf-token': csrf, origin: g.apiUrl }, body });
    assert.equal(ok.status, 201, ok.text);
    assert.ok(ok.body.liveUpdate, 'the change reports its live update');
    assert.equal((await g.api('DELETE', `/api/v1/policies/${ok.body.id}`)).status, 204);
  });

  it('signs in users with the console role only; sign-out and removal end the session', async () => {
    assert.equal((await g.api('POST', '/api/v1/users', { username: 'op', password: 'op-console-pw', console: true })).status, 201);
    assert.equal((await g.api('POST', '/api/v1/users', { username: 'plain', password: 'plain-pw-123', rendezvous: true })).status, 201);
    const plain = await signIn(g, { username: 'plain', password: 'plain-pw-123' });
    assert.equal(plain.reply.status, 401, 'a user without the console role');
    const wrong = await signIn(g, { username: 'op', password: 'wrong' });
    assert.equal(wrong.reply.status, 401);
    const op = await signIn(g, { username: 'op', password: 'op-console-pw' });
    assert.equal(op.reply.status, 200, op.reply.text);
    assert.equal(op.reply.body.user, 'op');
    const out = await http(`${g.apiUrl}/api/v1/console/session`, { method: 'DELETE', headers: { cookie: op.cookie, 'x-csrf-token': op.csrf } });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie') ?? '', /edgeward_console=; .*Max-Age=0/);
    assert.equal((await http(`${g.apiUrl}/api/v1/stats`, { headers: { cookie: op.cookie } })).status, 401, 'signed out');
    const again = await signIn(g, { username: 'op', password: 'op-console-pw' });
    assert.equal((await http(`${g.apiUrl}/api/v1/stats`, { headers: { cookie: again.cookie } })).status, 200);
    assert.equal((await g.api('DELETE', '/api/v1/users/op')).status, 204);
    assert.equal((await http(`${g.apiUrl}/api/v1/stats`, { headers: { cookie: again.cookie } })).status, 401, "a removed user's session ends");
  });

  it("shows the services' state, the kernel's offer and the log lines", async () => {
    const services = await g.api<{ services: Array<{ name: string; running: boolean; listen: string[] }> }>('GET', '/api/v1/services');
    assert.equal(services.status, 200);
    const byName = Object.fromEntries(services.body.services.map((s) => [s.name, s]));
    assert.equal(byName.socks?.running, true);
    assert.deepEqual(byName.socks?.listen, [`${g.socksHost}:${g.socksPort}`]);
    assert.equal(byName.rendezvous?.running, true);
    assert.equal(byName.shield?.running, false);
    const kernel = await g.api<{ congestionControls: string[]; mptcp: { pathManagers: string[] } }>('GET', '/api/v1/kernel');
    assert.ok(kernel.body.congestionControls.includes('reno'), JSON.stringify(kernel.body));
    assert.ok(kernel.body.mptcp.pathManagers.includes('ndiffports'), 'edgeward\'s own path managers are offered');
    const logs = await g.api<{ lines: Array<{ msg: string; level: string; thread: number }> }>('GET', '/api/v1/logs?level=warn&limit=50');
    assert.equal(logs.status, 200);
    assert.ok(logs.body.lines.every((l) => l.level === 'warn' || l.level === 'error'));
    assert.ok(logs.body.lines.some((l) => l.msg === 'console: wrong API token at sign-in'), 'the failed sign-ins are in the log view');
    const all = await g.api<{ lines: Array<{ msg: string; thread: number }> }>('GET', '/api/v1/logs?limit=1000');
    assert.ok(all.body.lines.some((l) => l.msg === 'listening'));
    // a large JSON answer goes gzipped to a client that takes it, as is to one that does not
    const plain = await http(`${g.apiUrl}/api/docs`, { headers: { 'accept-encoding': 'identity' } });
    const zipped = await http(`${g.apiUrl}/api/docs`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.equal(zipped.headers.get('content-encoding'), 'gzip', `the OpenAPI document (${plain.text.length} bytes) is gzipped`);
    assert.deepEqual(zipped.body, plain.body);
    const bad = await g.api<{ error: { field: string } }>('GET', '/api/v1/logs?level=loud');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'querystring.level');
  });

  it('streams stats each second and new log lines, until the session ends', async () => {
    const { cookie, csrf } = await signIn(g, { token: g.token });
    const ac = new AbortController();
    const res = await fetch(`${g.apiUrl}/api/v1/stream`, { headers: { cookie }, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const started = Date.now();
    setTimeout(() => void signIn(g, { token: 'wrong-for-the-stream' }), 1200); // a warn line to come
    while (Date.now() - started < 6000 && !(/event: stats[\s\S]*event: stats[\s\S]*event: stats/.test(text) && text.includes('wrong API token'))) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    // signing out ends the stream it opened
    const out = await http(`${g.apiUrl}/api/v1/console/session`, { method: 'DELETE', headers: { cookie, 'x-csrf-token': csrf } });
    assert.equal(out.status, 204);
    const signedOut = Date.now();
    let ended = false;
    while (Date.now() - signedOut < 5000) {
      const r = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done) {
        ended = true;
        break;
      }
    }
    ac.abort();
    assert.ok(ended, 'the event stream ended after the sign-out');
    process.stdout.write(`# the stream ended ${Date.now() - signedOut} ms after the sign-out\n`);
    const stats = [...text.matchAll(/event: stats\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]!));
    assert.ok(stats.length >= 3, `${stats.length} stats events`);
    assert.ok('connectionsPerSecond' in stats[0] && 'bytesDownPerSecond' in stats[0] && Array.isArray(stats[0].services));
    assert.match(text, /event: log\ndata: .*console: wrong API token at sign-in/, 'the new log line arrives on the stream');
  });

  it("imports the original system's flat file, all or none, naming bad lines", async () => {
    const bad = await g.api<{ error: { field: string; message: string } }>('POST', '/api/v1/policies/import', { text: '10.1.0.1,1,default,fullmesh,\n10.1.0.3,1\n.\n' });
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.equal(bad.body.error.field, 'body.text');
    assert.match(bad.body.error.message, /line 2/);
    assert.equal((await g.api<{ policies: unknown[] }>('GET', '/api/v1/policies')).body.policies.length, 0, 'nothing imported');
    const ok = await g.api<{ policies: Array<{ match: unknown }>; liveUpdate: unknown; notes: string[] }>('POST', '/api/v1/policies/import', { text: '10.1.0.1,1,default,fullmesh,\n10.1.0.2,0,default,default,\n.\n' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.deepEqual(ok.body.policies.map((p) => JSON.stringify(p.match)).sort(), ['{"host":"10.1.0.1"}', '{"host":"10.1.0.2"}']);
    assert.ok(ok.body.notes.some((n) => /fullmesh/.test(n) && /line/.test(n)), 'the translation notes name the lines');
    const clash = await g.api<{ error: { field: string; message: string } }>('POST', '/api/v1/policies/import', { text: '10.1.0.9,1,default,fullmesh,\n10.1.0.1,1,default,fullmesh,\n.\n' });
    assert.equal(clash.status, 409, JSON.stringify(clash.body));
    assert.equal(clash.body.error.field, 'body.text');
  });

  it('a page of another origin cannot drive the API with the signed-in browser', { skip: skipBrowser }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeward-console-csrf-'));
    let browser: Browser | undefined;
    let evil: Server | undefined;
    try {
      evil = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title><p>another origin</p>'));
      await new Promise<void>((r) => evil!.listen(0, '127.0.0.1', r));
      const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;
      browser = await launchChromium(dir);
      const page = await browser.newPage();
      // signed in on the console's origin: the browser holds the cookie
      await page.goto(`${g.apiUrl}/console`);
      const status = await page.evaluate(async (token) => (await fetch('/api/v1/console/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })).status, g.token!);
      assert.equal(status, 200);
      const before = (await g.api<{ policies: unknown[] }>('GET', '/api/v1/policies')).body.policies.length;
      // the same host on another port: another origin, but the same site, so SameSite alone would not stop it
      await page.goto(evilUrl);
      const attempts = await page.evaluate(async (api) => {
        const out: string[] = [];
        const tries: Array<[string, RequestInit]> = [
          ['json', { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ match: { host: 'evil.test' }, transport: {} }) }],
          ['text/plain', { method: 'POST', credentials: 'include', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ match: { host: 'evil2.test' }, transport: {} }) }],
          ['delete', { method: 'DELETE', credentials: 'include', mode: 'no-cors' }],
        ];
        for (const [name, init] of tries) {
          try {
            const r = await fetch(`${api}/api/v1/policies${name === 'delete' ? '/1' : ''}`, init);
            out.push(`${name}: ${r.type} ${r.status}`);
          } catch (e) {
            out.push(`${name}: blocked (${(e as Error).message})`);
          }
        }
        // and the read: the cookie goes along, but the answer is not this page's to read
        try {
          const r = await fetch(`${api}/api/v1/connections`, { credentials: 'include' });
          out.push(`read: ${r.status} ${(await r.text()).slice(0, 40)}`);
        } catch (e) {
          out.push(`read: blocked (${(e as Error).message})`);
        }
        return out;
      }, g.apiUrl);
      process.stdout.write(`# from ${evilUrl}: ${attempts.join('; ')}\n`);
      assert.ok(attempts.find((a) => a.startsWith('read:'))?.includes('blocked'), `the other origin cannot read the API's answers: ${attempts.join('; ')}`);
      assert.equal((await g.api<{ policies: unknown[] }>('GET', '/api/v1/policies')).body.policies.length, before, 'no policy was created or removed from the other origin');
      const logs = await g.api<{ lines: Array<{ msg: string }> }>('GET', '/api/v1/logs?limit=1000');
      assert.ok(!logs.body.lines.some((l) => /evil/.test(JSON.stringify(l))));
    } finally {
      await browser?.close();
      evil?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers repeated failed sign-ins with 429', async () => {
    let status = 0;
    for (let i = 0; i < 15 && status !== 429; i++) status = (await signIn(g, { token: `wrong-${i}` })).reply.status;
    assert.equal(status, 429);
  });
});
