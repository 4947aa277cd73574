// The REST API over real HTTP on loopback, with real services: SQLite in a temp dir, the policy
// service reading this kernel's capabilities, real sockets in the connection registry.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createApi } from '../../src/api/server.js';
import { setupApiToken } from '../../src/auth/api-token.js';
import { DeviceService } from '../../src/auth/devices.js';
import { UserService } from '../../src/auth/users.js';
import { availableCongestionControls } from '../../src/kernel/capabilities.js';
import { createLogger } from '../../src/log/logger.js';
import { reapplyPolicies } from '../../src/transport/live.js';
import { PolicyService } from '../../src/policy/service.js';
import { ConnectionRegistry } from '../../src/relay/registry.js';
import { takeSocket } from '../../src/kernel/fdio.js';
import { SpliceRelay } from '../../src/relay/splice.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

const TOKEN = 'test-token';

interface Harness {
  url: string;
  app: FastifyInstance;
  store: SqliteStore;
  registry: ConnectionRegistry;
  policies: PolicyService;
  logs: string[];
  close(): Promise<void>;
}

async function startApi(): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-api-'));
  const store = new SqliteStore(dir);
  const policies = await PolicyService.open(store);
  const users = new UserService(store);
  const registry = new ConnectionRegistry();
  const token = await setupApiToken(store, dir, TOKEN);
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', format: 'json', write: (line) => logs.push(line) });
  const app = await createApi({ policies, users, devices: new DeviceService(store), registry, verifyToken: token.verify, reapply: () => reapplyPolicies(registry.list(), (d) => policies.decide(d)), logger, version: '9.8.7' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    store,
    registry,
    policies,
    logs,
    async close() {
      await app.close();
      await store.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Res {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

let h: Harness;

async function call(method: string, path: string, opts: { body?: unknown; raw?: string; token?: string | null; type?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] = opts.type ?? 'application/json';
  const res = await fetch(h.url + path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed };
}

function assertError(r: Res, status: number, code: string, field: string | null, message?: RegExp): void {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.equal(r.body?.error?.code, code, r.text);
  assert.equal(r.body.error.field, field, r.text);
  assert.equal(typeof r.body.error.message, 'string');
  if (message) assert.match(r.body.error.message, message);
}

async function policyCount(): Promise<number> {
  const r = await call('GET', '/api/v1/policies');
  assert.equal(r.status, 200);
  return r.body.policies.length;
}

async function clearPolicies(): Promise<void> {
  for (const p of h.policies.list()) await h.policies.remove(p.id);
}

/** A Prometheus 0.0.4 text page as { 'name{labels}': value }; throws on a malformed line. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Map<string, string>();
  const helped = new Set<string>();
  assert.ok(text.endsWith('\n'), 'the page ends with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (m) {
      helped.add(m[1]!);
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      assert.ok(!typed.has(m[1]!), `one TYPE line for ${m[1]}`);
      typed.set(m[1]!, m[2]!);
      continue;
    }
    assert.ok(!line.startsWith('#'), `unexpected comment line: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed sample line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    assert.ok(typed.has(name), `${name} has a TYPE line before its samples`);
    assert.ok(helped.has(name), `${name} has a HELP line`);
    const value = Number(m[4]);
    assert.ok(!Number.isNaN(value), `value of ${line}`);
    samples.set(`${name}${m[2] ?? ''}`, value);
  }
  return samples;
}

before(async () => {
  h = await startApi();
});

after(async () => {
  await h.close();
});

describe('authentication', () => {
  it('serves /health without a token', async () => {
    const r = await call('GET', '/health', { token: null });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'ok', version: '9.8.7' });
  });

  it('refuses every API route without a token: 401, WWW-Authenticate: Bearer, JSON error', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/policies'],
      ['POST', '/api/v1/policies'],
      ['GET', '/api/v1/policies/default'],
      ['DELETE', '/api/v1/policies/1'],
      ['GET', '/api/v1/users'],
      ['GET', '/api/v1/connections'],
      ['GET', '/api/v1/stats'],
      ['GET', '/metrics'],
    ] as const) {
      const r = await call(method, path, { token: null, body: method === 'POST' ? { match: { host: 'a.example' }, transport: {} } : undefined });
      assertError(r, 401, 'unauthorized', 'headers.authorization', /bearer token/);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer /, `${method} ${path}`);
    }
    assert.equal(await policyCount(), 0, 'the token-less POST stored nothing');
  });

  it('refuses a wrong token, and never logs either token', async () => {
    const r = await call('GET', '/api/v1/stats', { token: 'not-the-token' });
    assertError(r, 401, 'invalid_token', 'headers.authorization');
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer .*error="invalid_token"/);
    const logs = h.logs.join('');
    assert.ok(!logs.includes('not-the-token'));
    assert.ok(!logs.includes(TOKEN));
  });

  it('refuses a non-Bearer authorization scheme', async () => {
    const res = await fetch(`${h.url}/api/v1/stats`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } });
    assert.equal(res.status, 401);
  });
});

describe('policies', () => {
  before(clearPolicies);

  it('creates a policy (201, stored object with id, Location, liveUpdate) and lists it', async () => {
    const r = await call('POST', '/api/v1/policies', {
      body: { match: { host: 'Example.COM', port: 443 }, transport: { mptcp: true, congestion: 'reno', noDelay: true, keepAlive: { idle: 60, interval: 10, count: 5 } }, comment: 'web' },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(typeof r.body.id, 'number');
    assert.deepEqual(r.body.match, { host: 'Example.COM', port: 443 });
    assert.deepEqual(r.body.transport, { mptcp: true, congestion: 'reno', noDelay: true, keepAlive: { idle: 60, interval: 10, count: 5 } });
    assert.equal(r.body.comment, 'web');
    assert.ok(!Number.isNaN(Date.parse(r.body.createdAt)));
    assert.equal(r.headers.get('location'), `/api/v1/policies/${r.body.id}`);
    assert.equal(r.body.liveUpdate.connectionsUpdated, 0);
    assert.match(r.body.liveUpdate.notes.join('\n'), /new connections only/);

    const list = await call('GET', '/api/v1/policies');
    assert.equal(list.status, 200);
    assert.equal(list.body.policies.length, 1);
    assert.equal(list.body.policies[0].id, r.body.id);
    assert.equal(list.body.policies[0].liveUpdate, undefined, 'a list has no liveUpdate');

    const one = await call('GET', `/api/v1/policies/${r.body.id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body.transport, r.body.transport);
  });

  it('refuses a second policy with the same match: 409', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { match: { host: 'example.com', port: 443 }, transport: { mptcp: false } } });
    assertError(r, 409, 'conflict', 'body.match');
    assert.equal(await policyCount(), 1);
  });

  it('refuses a congestion control the kernel lacks: 422 listing what it has', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { match: { host: 'cc.example' }, transport: { congestion: 'foo' } } });
    assertError(r, 422, 'unsupported', 'body.transport.congestion', /"foo" is not available/);
    assert.deepEqual(r.body.error.available, availableCongestionControls());
    assert.ok(r.body.error.available.includes('reno'));
  });

  it('refuses a wrong type with a message naming the field: 400', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { match: { host: 'x.example' }, transport: { congestion: 5 } } });
    assertError(r, 400, 'invalid_request', 'body.transport.congestion', /^body\.transport\.congestion must be string$/);
    const p = await call('POST', '/api/v1/policies', { body: { match: { host: 'x.example', port: '80' }, transport: {} } });
    assertError(p, 400, 'invalid_request', 'body.match.port', /body\.match\.port must be integer/);
    const big = await call('POST', '/api/v1/policies', { body: { match: { host: 'x.example', port: 70000 }, transport: {} } });
    assertError(big, 400, 'invalid_request', 'body.match.port', /<= 65535/);
    const ka = await call('POST', '/api/v1/policies', { body: { match: { host: 'x.example' }, transport: { keepAlive: true } } });
    assertError(ka, 400, 'invalid_request', 'body.transport.keepAlive', /must be an object or false/);
    const missing = await call('POST', '/api/v1/policies', { body: { match: { host: 'x.example' } } });
    assertError(missing, 400, 'invalid_request', 'body.transport', /missing required field "transport"/);
  });

  it('rejects unknown fields at every level instead of dropping them', async () => {
    const cases: Array<[unknown, string, string]> = [
      [{ match: { host: 'u.example' }, transport: {}, foo: 1 }, 'body.foo', 'body: unknown field "foo"'],
      [{ match: { host: 'u.example', hots: 'typo' }, transport: {} }, 'body.match.hots', 'body.match: unknown field "hots"'],
      [{ match: { host: 'u.example' }, transport: { mptpc: true } }, 'body.transport.mptpc', 'body.transport: unknown field "mptpc"'],
      [{ match: { host: 'u.example' }, transport: { keepAlive: { idle: 1, interval: 1, count: 1, probes: 3 } } }, 'body.transport.keepAlive.probes', 'body.transport.keepAlive: unknown field "probes"'],
    ];
    for (const [body, field, message] of cases) {
      const r = await call('POST', '/api/v1/policies', { body });
      assertError(r, 400, 'invalid_request', field);
      assert.equal(r.body.error.message, message);
    }
    assert.equal(await policyCount(), 1, 'nothing was stored');
  });

  it('refuses a match with neither or both of host and cidr: 422 naming match', async () => {
    const none = await call('POST', '/api/v1/policies', { body: { match: { port: 80 }, transport: {} } });
    assertError(none, 422, 'invalid', 'body.match', /exactly one of "host" or "cidr"/);
    const bad = await call('POST', '/api/v1/policies', { body: { match: { cidr: '10.0.0.0/40' }, transport: {} } });
    assertError(bad, 422, 'invalid', 'body.match.cidr', /prefix length/);
  });

  it('replaces a policy with PUT and patches it with PATCH (null removes a field)', async () => {
    const created = await call('POST', '/api/v1/policies', { body: { match: { cidr: '198.51.100.0/24' }, transport: { mptcp: true, congestion: 'reno' }, comment: 'lab' } });
    assert.equal(created.status, 201);
    const id = created.body.id as number;

    const put = await call('PUT', `/api/v1/policies/${id}`, { body: { match: { cidr: '198.51.100.0/24' }, transport: { mptcp: false } } });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.body.transport, { mptcp: false });
    assert.equal(put.body.comment, undefined, 'PUT replaces the whole policy');
    assert.ok(Array.isArray(put.body.liveUpdate.notes));

    const patch = await call('PATCH', `/api/v1/policies/${id}`, { body: { transport: { noDelay: true }, comment: 'patched' } });
    assert.equal(patch.status, 200, patch.text);
    assert.deepEqual(patch.body.transport, { mptcp: false, noDelay: true });
    assert.equal(patch.body.comment, 'patched');

    const merge = await call('PATCH', `/api/v1/policies/${id}`, { body: { transport: { mptcp: null }, comment: null }, type: 'application/merge-patch+json' });
    assert.equal(merge.status, 200, merge.text);
    assert.deepEqual(merge.body.transport, { noDelay: true });
    assert.equal(merge.body.comment, undefined);
    assert.ok(Array.isArray(merge.body.liveUpdate.notes));

    const stored = await call('GET', `/api/v1/policies/${id}`);
    assert.deepEqual(stored.body.transport, { noDelay: true });

    const badPatch = await call('PATCH', `/api/v1/policies/${id}`, { body: { transport: { congestion: 3 } } });
    assertError(badPatch, 400, 'invalid_request', 'body.transport.congestion', /must be string or null/);
    const unknownPatch = await call('PATCH', `/api/v1/policies/${id}`, { body: { transport: { nodelay: true } } });
    assertError(unknownPatch, 400, 'invalid_request', 'body.transport.nodelay', /unknown field "nodelay"/);
    const both = await call('PATCH', `/api/v1/policies/${id}`, { body: { match: { host: 'both.example' } } });
    assertError(both, 422, 'invalid', 'body.match');
    const missing = await call('PATCH', '/api/v1/policies/999999', { body: { comment: 'x' } });
    assertError(missing, 404, 'not_found', 'params.id', /no policy with id 999999/);
    const missingPut = await call('PUT', '/api/v1/policies/999999', { body: { match: { host: 'gone.example' }, transport: {} } });
    assertError(missingPut, 404, 'not_found', 'params.id');
  });

  it('deletes a policy: 204, then 404', async () => {
    const created = await call('POST', '/api/v1/policies', { body: { match: { host: 'delete.example' }, transport: {} } });
    const id = created.body.id as number;
    const del = await call('DELETE', `/api/v1/policies/${id}`);
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    assertError(await call('GET', `/api/v1/policies/${id}`), 404, 'not_found', 'params.id');
    assertError(await call('DELETE', `/api/v1/policies/${id}`), 404, 'not_found', 'params.id');

    // a client that sends content-type: application/json with an empty DELETE is fine
    const other = await call('POST', '/api/v1/policies', { body: { match: { host: 'delete2.example' }, transport: {} } });
    assert.equal((await call('DELETE', `/api/v1/policies/${other.body.id}`, { raw: '' })).status, 204);
  });

  it('answers 400 naming id for a non-numeric id, but serves /default', async () => {
    for (const method of ['GET', 'DELETE'] as const) {
      assertError(await call(method, '/api/v1/policies/abc'), 400, 'invalid_request', 'params.id', /params\.id must be an integer/);
    }
    assertError(await call('PUT', '/api/v1/policies/1x', { body: { match: { host: 'a.example' }, transport: {} } }), 400, 'invalid_request', 'params.id');
    const def = await call('GET', '/api/v1/policies/default');
    assert.equal(def.status, 200);
    assert.deepEqual(def.body, {});
  });

  it('sets the default transport with PUT /default, validated like any transport', async () => {
    const put = await call('PUT', '/api/v1/policies/default', { body: { mptcp: true, congestion: 'reno' } });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.body.mptcp, true);
    assert.equal(put.body.congestion, 'reno');
    assert.match(put.body.liveUpdate.notes.join('\n'), /new connections only/);
    assert.deepEqual((await call('GET', '/api/v1/policies/default')).body, { mptcp: true, congestion: 'reno' });

    const bad = await call('PUT', '/api/v1/policies/default', { body: { congestion: 'nope' } });
    assertError(bad, 422, 'unsupported', 'body.congestion', /"nope" is not available/);
    assert.ok(Array.isArray(bad.body.error.available));
    const unknown = await call('PUT', '/api/v1/policies/default', { body: { congestion: 'reno', nagle: true } });
    assertError(unknown, 400, 'invalid_request', 'body.nagle', /unknown field "nagle"/);
    assert.deepEqual((await call('GET', '/api/v1/policies/default')).body, { mptcp: true, congestion: 'reno' }, 'unchanged after failures');

    const reset = await call('PUT', '/api/v1/policies/default', { body: {} });
    assert.equal(reset.status, 200);
    assert.deepEqual((await call('GET', '/api/v1/policies/default')).body, {});
  });
});

describe('legacy body', () => {
  before(clearPolicies);

  it('translates {"enable","ip","path_manager","scheduler"}: fullmesh becomes kernel, with a note', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { enable: '1', ip: '192.0.2.10', path_manager: 'fullmesh', scheduler: 'default' } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.body.match, { host: '192.0.2.10' });
    assert.deepEqual(r.body.transport, { mptcp: true, scheduler: 'default', pathManager: 'kernel' });
    assert.match(r.body.notes.join('\n'), /fullmesh is a flag of an endpoint/);
    assert.ok(r.body.liveUpdate);
  });

  it('accepts enable as a number, and an ip with "/" as a CIDR block', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { enable: 0, ip: '203.0.113.0/24' } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.body.match, { cidr: '203.0.113.0/24' });
    assert.deepEqual(r.body.transport, { mptcp: false });
  });

  it('refuses binder: 422 explaining a stock kernel cannot do it, listing what it can', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { enable: '1', ip: '192.0.2.11', path_manager: 'binder' } });
    assertError(r, 422, 'unsupported', 'body.path_manager', /no loose source routing/);
    assert.ok(r.body.error.available.includes('ndiffports'), r.text);
  });

  it('imports ndiffports as edgeward\'s ndiffports path manager', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { enable: '1', ip: '192.0.2.14', path_manager: 'ndiffports' } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.body.transport, { mptcp: true, pathManager: 'ndiffports' });
    assert.match(r.body.notes.join('\n'), /edgeward's own path manager/);
    assert.equal((await call('DELETE', `/api/v1/policies/${r.body.id}`)).status, 204);
  });

  it('validates subflows and backup: range, the path manager they belong to, device names', async () => {
    const post = (transport: Record<string, unknown>) => call('POST', '/api/v1/policies', { body: { match: { host: '192.0.2.15' }, transport } });
    assertError(await post({ mptcp: true, pathManager: 'ndiffports', subflows: 9 }), 400, 'invalid_request', 'body.transport.subflows', /8/);
    assertError(await post({ mptcp: true, pathManager: 'fullmesh', subflows: 3 }), 422, 'invalid', 'body.transport.subflows', /applies to pathManager "ndiffports"/);
    assertError(await post({ mptcp: true, pathManager: 'ndiffports', backup: ['wan1'] }), 422, 'invalid', 'body.transport.backup', /needs pathManager "fullmesh"/);
    assertError(await post({ mptcp: true, pathManager: 'fullmesh', backup: ['lte 0'] }), 422, 'invalid', 'body.transport.backup[0]', /neither an IP address nor a device name/);
    assertError(await post({ mptcp: false, pathManager: 'ndiffports' }), 422, 'invalid', 'body.transport.mptcp', /needs MPTCP/);
    const ok = await post({ mptcp: true, pathManager: 'fullmesh', backup: ['lte0', '10.0.2.2'] });
    assert.equal(ok.status, 201, ok.text);
    assert.deepEqual(ok.body.transport.backup, ['lte0', '10.0.2.2']);
    assert.equal((await call('DELETE', `/api/v1/policies/${ok.body.id}`)).status, 204);
  });

  it('refuses a scheduler the kernel lacks, naming the legacy field and listing what it has', async () => {
    const r = await call('POST', '/api/v1/policies', { body: { enable: '1', ip: '192.0.2.12', scheduler: 'roundrobin' } });
    assertError(r, 422, 'unsupported', 'body.scheduler', /scheduler "roundrobin" is not available/);
    assert.ok(Array.isArray(r.body.error.available));
  });

  it('validates the legacy body with its own schema', async () => {
    assertError(await call('POST', '/api/v1/policies', { body: { enable: '2', ip: '192.0.2.13' } }), 400, 'invalid_request', 'body.enable', /body\.enable must be "0", "1", 0 or 1/);
    assertError(await call('POST', '/api/v1/policies', { body: { enable: '1' } }), 400, 'invalid_request', 'body.ip', /missing required field "ip"/);
    assertError(await call('POST', '/api/v1/policies', { body: { enable: '1', ip: '192.0.2.13', pm: 'x' } }), 400, 'invalid_request', 'body.pm', /unknown field "pm"/);
    assertError(await call('POST', '/api/v1/policies', { body: { enable: '1', ip: 'no such host!' } }), 422, 'invalid', 'body.ip');
    assert.equal(await policyCount(), 2, 'only the two good legacy bodies were stored');
  });
});

describe('bulk', () => {
  before(clearPolicies);

  it('creates all policies: 201 with the stored list and liveUpdate', async () => {
    const r = await call('POST', '/api/v1/policies/bulk', {
      body: { policies: [{ match: { host: 'a.bulk.example' }, transport: { mptcp: true } }, { match: { cidr: '192.0.2.0/25' }, transport: { noDelay: false } }] },
    });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(
      r.body.policies.map((p: { match: unknown }) => p.match),
      [{ host: 'a.bulk.example' }, { cidr: '192.0.2.0/25' }],
    );
    assert.ok(r.body.policies.every((p: { id: unknown }) => typeof p.id === 'number'));
    assert.ok(Array.isArray(r.body.liveUpdate.notes));
    assert.equal(await policyCount(), 2);
  });

  it('stores nothing when one entry is bad, and names it policies[i]', async () => {
    const ok = { match: { host: 'b.bulk.example' }, transport: {} };
    const unsupported = await call('POST', '/api/v1/policies/bulk', { body: { policies: [ok, { match: { host: 'c.bulk.example' }, transport: { congestion: 'foo' } }] } });
    assertError(unsupported, 422, 'unsupported', 'body.policies[1].transport.congestion', /^policies\[1\]: /);
    const dup = await call('POST', '/api/v1/policies/bulk', { body: { policies: [ok, ok] } });
    assertError(dup, 409, 'conflict', 'body.policies[1].match', /same match as policies\[0\]/);
    const existing = await call('POST', '/api/v1/policies/bulk', { body: { policies: [ok, { match: { host: 'a.bulk.example' }, transport: {} }] } });
    assert.equal(existing.status, 409, existing.text);
    const unknown = await call('POST', '/api/v1/policies/bulk', { body: { policies: [ok, { match: { host: 'd.bulk.example' }, transport: { foo: 1 } }] } });
    assertError(unknown, 400, 'invalid_request', 'body.policies[1].transport.foo', /body\.policies\[1\]\.transport: unknown field "foo"/);
    const empty = await call('POST', '/api/v1/policies/bulk', { body: { policies: [] } });
    assertError(empty, 400, 'invalid_request', 'body.policies');
    assert.equal(await policyCount(), 2, 'nothing was stored by the failed requests');
    assert.ok(!(await call('GET', '/api/v1/policies')).body.policies.some((p: { match: { host?: string } }) => p.match.host === 'b.bulk.example'));
  });
});

describe('request errors', () => {
  it('answers malformed JSON with 400 invalid_json', async () => {
    const r = await call('POST', '/api/v1/policies', { raw: '{"match": {' });
    assertError(r, 400, 'invalid_json', 'body', /not valid JSON/);
    const empty = await call('POST', '/api/v1/policies', { raw: '' });
    assertError(empty, 400, 'invalid_json', 'body', /empty/);
  });

  it('answers a non-JSON content type with 415', async () => {
    const r = await call('POST', '/api/v1/policies', { raw: 'host=example.com', type: 'application/x-www-form-urlencoded' });
    assertError(r, 415, 'unsupported_media_type', 'headers.content-type');
    const text = await call('POST', '/api/v1/users', { raw: '{"username":"a","password":"b"}', type: 'text/plain' });
    assert.equal(text.status, 415);
  });

  it('answers a missing body with 400 naming body', async () => {
    assertError(await call('POST', '/api/v1/policies'), 400, 'invalid_request', 'body', /body must be object/);
    assertError(await call('POST', '/api/v1/policies', { body: [1, 2] }), 400, 'invalid_request', 'body', /body must be object/);
  });

  it('answers an oversized body with 413, but lets bulk carry more', async () => {
    const huge = JSON.stringify({ match: { host: 'big.example' }, transport: {}, comment: 'x'.repeat(1024 * 1024 + 10) });
    assertError(await call('POST', '/api/v1/policies', { raw: huge }), 413, 'body_too_large', 'body');

    // on a server of its own: removing thousands of policies one by one afterwards would be slow
    const local = await startApi();
    const saved = h;
    h = local;
    try {
      const many = Array.from({ length: 9000 }, (_, i) => ({ match: { host: `h${i}.many.example` }, transport: { mptcp: true, noDelay: true }, comment: 'bulk import of many destinations' }));
      const body = JSON.stringify({ policies: many });
      assert.ok(body.length > 1024 * 1024, 'the bulk body is over the normal limit');
      const r = await call('POST', '/api/v1/policies/bulk', { raw: body });
      assert.equal(r.status, 201, r.text.slice(0, 300));
      assert.equal(await policyCount(), 9000);
      const tooMany = await call('POST', '/api/v1/policies/bulk', { raw: JSON.stringify({ policies: [...many, ...many.slice(0, 1001)] }) });
      assertError(tooMany, 400, 'invalid_request', 'body.policies', /must NOT have more than 10000 items/);
    } finally {
      h = saved;
      await local.close();
    }
  });

  it('answers an unknown route with a 404 JSON error', async () => {
    assertError(await call('GET', '/api/v1/nothing-here'), 404, 'not_found', null, /no route GET \/api\/v1\/nothing-here/);
    assertError(await call('POST', '/api/v1/stats', { body: {} }), 404, 'not_found', null);
  });

  it('rejects unknown query parameters and a bad limit', async () => {
    assertError(await call('GET', '/api/v1/connections?limit=ten'), 400, 'invalid_request', 'querystring.limit', /must be an integer/);
    assertError(await call('GET', '/api/v1/connections?limt=1'), 400, 'invalid_request', 'querystring.limt', /unknown field "limt"/);
  });
});

describe('users', () => {
  it('adds a user (201) and lists it without any password hash', async () => {
    const r = await call('POST', '/api/v1/users', { body: { username: 'alice', password: 'correct horse' } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(Object.keys(r.body).sort(), ['console', 'createdAt', 'rendezvous', 'socks', 'turnRealm', 'username']);
    assert.equal(r.body.username, 'alice');
    assert.equal(r.body.turnRealm, null, 'no TURN unless asked for');
    assert.deepEqual([r.body.socks, r.body.rendezvous], [true, false], 'SOCKS by default, rendezvous when asked for');
    const list = await call('GET', '/api/v1/users');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.users.map((u: { username: string }) => u.username),
      ['alice'],
    );
    assert.deepEqual(Object.keys(list.body.users[0]).sort(), ['console', 'createdAt', 'rendezvous', 'socks', 'turnRealm', 'username']);
    assert.ok(!/scrypt|hash|password|correct horse/.test(list.text), list.text);
    assert.ok(!h.logs.join('').includes('correct horse'), 'the password is not logged');
  });

  it('refuses a duplicate (409), a bad name (422), unknown fields and missing password (400)', async () => {
    assertError(await call('POST', '/api/v1/users', { body: { username: 'alice', password: 'x' } }), 409, 'conflict', 'body.username');
    assertError(await call('POST', '/api/v1/users', { body: { username: 'bad name', password: 'x' } }), 422, 'invalid', 'body.username', /A-Z a-z 0-9/);
    assertError(await call('POST', '/api/v1/users', { body: { username: 'bob', password: 'x', admin: true } }), 400, 'invalid_request', 'body.admin', /unknown field "admin"/);
    assertError(await call('POST', '/api/v1/users', { body: { username: 'bob' } }), 400, 'invalid_request', 'body.password', /missing required field "password"/);
    assertError(await call('POST', '/api/v1/users', { body: { username: 'bob', password: '' } }), 400, 'invalid_request', 'body.password');
  });

  it('removes a user: 204, then 404', async () => {
    assert.equal((await call('DELETE', '/api/v1/users/alice')).status, 204);
    assertError(await call('DELETE', '/api/v1/users/alice'), 404, 'not_found', 'params.username', /no user "alice"/);
    assert.deepEqual((await call('GET', '/api/v1/users')).body, { users: [] });
  });
});

describe('connections, stats and metrics', () => {
  let server: net.Server;
  const accepted: net.Socket[] = [];
  const sockets: net.Socket[] = [];

  before(async () => {
    await clearPolicies();
    server = net.createServer((s) => accepted.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  after(async () => {
    for (const s of [...sockets, ...accepted]) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function connect(): Promise<{ local: net.Socket; remote: net.Socket }> {
    const n = accepted.length;
    const local = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sockets.push(local);
    await new Promise<void>((resolve, reject) => local.once('connect', resolve).once('error', reject));
    while (accepted.length === n) await new Promise((r) => setTimeout(r, 5));
    return { local, remote: accepted[n]! };
  }

  async function receive(s: net.Socket, bytes: number): Promise<void> {
    while (s.bytesRead < bytes) await new Promise((r) => setTimeout(r, 5));
  }

  it('lists an open connection with what the kernel has in effect, counts it in /metrics and /stats, and re-applies a policy change', async () => {
    const client = await connect(); // stands for the SOCKS client's connection
    const out = await connect(); // stands for the outgoing connection to the destination
    const clientPort = client.local.localPort!;
    // the relay edgeward runs for a proxied connection, between the two local ends
    const relay = new SpliceRelay(takeSocket(client.local).fd, takeSocket(out.local).fd, { idleTimeout: 0 }, () => undefined);
    relay.start();
    client.remote.resume();
    out.remote.resume();
    client.remote.write(Buffer.alloc(1000, 1)); // client -> destination: up
    out.remote.write(Buffer.alloc(3000, 2)); // destination -> client: down
    await receive(out.remote, 1000);
    await receive(client.remote, 3000);
    const port = (server.address() as net.AddressInfo).port;
    const rec = h.registry.add({
      listener: 'socks5',
      command: 'connect',
      startedAt: Date.now(),
      client: { address: '127.0.0.1', port: clientPort },
      user: 'alice',
      destination: { host: 'localhost', address: '127.0.0.1', port },
      policyId: null,
      transport: {},
      mptcpRequested: true,
      relay,
      close: () => relay.destroy(),
    });
    h.registry.countFailure('connection_refused');

    const list = await call('GET', '/api/v1/connections');
    assert.equal(list.status, 200, list.text);
    assert.equal(list.body.total, 1);
    const c = list.body.connections[0];
    assert.equal(c.id, rec.id);
    assert.equal(c.listener, 'socks5');
    assert.equal(c.user, 'alice');
    assert.deepEqual(c.destination, { host: 'localhost', address: '127.0.0.1', port });
    assert.equal(c.policyId, null);
    assert.deepEqual(c.bytes, { up: 1000, down: 3000 });
    assert.ok(!Number.isNaN(Date.parse(c.startedAt)));
    assert.equal(c.inEffect.mptcp, false, 'a plain TCP socket is not MPTCP');
    assert.ok(availableCongestionControls().includes(c.inEffect.congestion), c.inEffect.congestion);
    assert.equal(typeof c.inEffect.noDelay, 'boolean');

    const limited = await call('GET', '/api/v1/connections?limit=0');
    assert.deepEqual(limited.body, { total: 1, connections: [] });

    // a policy for this destination changes congestion control on the open socket
    const created = await call('POST', '/api/v1/policies', { body: { match: { host: '127.0.0.1' }, transport: { congestion: 'reno', noDelay: true } } });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.liveUpdate.connectionsUpdated, 1);
    const after = (await call('GET', '/api/v1/connections')).body.connections[0];
    assert.equal(after.policyId, created.body.id);
    assert.deepEqual(after.transport, { congestion: 'reno', noDelay: true });
    assert.equal(after.inEffect.congestion, 'reno', 'read back from the kernel');
    assert.equal(after.inEffect.noDelay, true);

    const stats = await call('GET', '/api/v1/stats');
    assert.equal(stats.status, 200);
    assert.equal(stats.body.active, 1);
    assert.equal(stats.body.connectionsTotal, 1);
    assert.equal(stats.body.bytesUp, 1000);
    assert.equal(stats.body.bytesDown, 3000);
    assert.deepEqual(stats.body.failures, { connection_refused: 1 });
    assert.equal(stats.body.policies, 1);
    assert.equal(stats.body.users, 0);

    const metrics = await call('GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const m = parsePrometheus(metrics.text);
    assert.equal(m.get('edgeward_connections_active'), 1);
    assert.equal(m.get('edgeward_connections_total'), 1);
    assert.equal(m.get('edgeward_bytes_total{direction="up"}'), 1000);
    assert.equal(m.get('edgeward_bytes_total{direction="down"}'), 3000);
    assert.equal(m.get('edgeward_request_failures_total{reason="connection_refused"}'), 1);
    assert.equal(m.get('edgeward_mptcp_connections_total{result="mptcp"}'), 1);
    assert.equal(m.get('edgeward_mptcp_connections_total{result="fallback"}'), 0);
    assert.equal(m.get('edgeward_auth_failures_total'), 0);
    assert.equal(m.get('edgeward_rejected_clients_total'), 0);
    assert.equal(m.get('edgeward_policies'), 1);
    assert.ok((m.get('edgeward_uptime_seconds') ?? -1) >= 0);

    // closed: no longer active, still counted
    h.registry.remove(rec);
    relay.destroy();
    const closed = parsePrometheus((await call('GET', '/metrics')).text);
    assert.equal(closed.get('edgeward_connections_active'), 0);
    assert.equal(closed.get('edgeward_connections_total'), 1);
    assert.equal(closed.get('edgeward_bytes_total{direction="up"}'), 1000);
    assert.deepEqual((await call('GET', '/api/v1/connections')).body, { total: 0, connections: [] });
  });

  it('lists a UDP association with its datagram byte counts and no socket state', async () => {
    const client = await connect();
    const rec = h.registry.add({
      listener: 'socks5',
      command: 'udp-associate',
      startedAt: Date.now(),
      client: { address: '127.0.0.1', port: client.local.localPort! },
      destination: { address: '0.0.0.0', port: 0 },
      policyId: null,
      transport: {},
      mptcpRequested: false,
      close: () => client.local.destroy(),
      udp: { up: 5, down: 7 },
    });
    try {
      const r = await call('GET', '/api/v1/connections');
      assert.equal(r.status, 200, r.text);
      const c = r.body.connections.find((x: { id: number }) => x.id === rec.id);
      assert.equal(c.command, 'udp-associate');
      assert.equal(c.inEffect, null);
      assert.deepEqual(c.bytes, { up: 5, down: 7 });
      assert.equal(c.user, undefined);
    } finally {
      h.registry.remove(rec);
    }
  });
});

describe('OpenAPI document', () => {
  it('is served without a token and describes the routes from their schemas, both policy body forms included', async () => {
    const r = await call('GET', '/api/docs', { token: null });
    assert.equal(r.status, 200);
    assert.match(r.body.openapi, /^3\./);
    assert.equal(r.body.info.version, '9.8.7');
    for (const p of ['/api/v1/policies', '/api/v1/policies/{id}', '/api/v1/policies/default', '/api/v1/policies/bulk', '/api/v1/users', '/api/v1/connections', '/api/v1/stats', '/metrics']) {
      assert.ok(r.body.paths[p], `documents ${p}`);
    }
    const post = r.body.paths['/api/v1/policies'].post;
    const forms = post.requestBody.content['application/json'].schema.anyOf;
    assert.equal(forms.length, 2);
    assert.deepEqual(forms.map((f: { title: string }) => f.title).sort(), ['LegacyPolicyInput', 'PolicyInput']);
    assert.ok(forms.every((f: { additionalProperties: boolean }) => f.additionalProperties === false));
    assert.ok(post.responses['201'] && post.responses['400'] && post.responses['422']);
    assert.ok(r.body.components.securitySchemes.bearer);
  });
});

describe('internal errors', () => {
  it('answers 500 with a generic message and logs the cause, when the store fails', async () => {
    const local = await startApi();
    const saved = h;
    h = local;
    try {
      await local.store.close();
      const r = await call('POST', '/api/v1/policies', { body: { match: { host: 'fail.example' }, transport: {} } });
      assertError(r, 500, 'internal_error', null, /internal error/);
      assert.ok(!/database|sqlite/i.test(r.body.error.message), 'no internals in the reply');
      const logged = local.logs.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === 'error');
      assert.equal(logged.length, 1);
      assert.match(logged[0]!.msg, /internal error/);
    } finally {
      h = saved;
      await local.close();
    }
  });
});
